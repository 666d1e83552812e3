//! Embedded discovery (feature `embedded`): no executors configured, so the
//! gateway runs one in its own process, loads its runtime in the background,
//! and has it as its only backend, called without a network hop.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Backend, BackendSet, Discovery, Target};

#[derive(Debug)]
pub struct EmbeddedDiscovery {
    executor: executor::Executor,
    rx: watch::Receiver<BackendSet>,
    _tx: watch::Sender<BackendSet>,
    /// Set to the reason when the runtime fails to load; closed once it loaded.
    load_failed: watch::Receiver<Option<String>>,
}

impl EmbeddedDiscovery {
    /// Starts loading `executor`'s runtime (call inside a tokio runtime). The
    /// executor answers 503 `not_ready` until it has loaded.
    pub fn start(executor: executor::Executor) -> EmbeddedDiscovery {
        let backend = Backend::new(
            "embedded",
            executor.name(),
            Target::Local(executor::api::router(executor.clone(), None)),
        );
        let set = BackendSet {
            ready: vec![Arc::new(backend)].into(),
            unready: 0,
        };
        let (tx, rx) = watch::channel(set);
        let (failed_tx, load_failed) = watch::channel(None);
        let loader = executor.clone();
        tokio::spawn(async move {
            match loader.load().await {
                Ok(()) => tracing::info!("the embedded executor is ready"),
                Err(error) => {
                    let _ = failed_tx.send(Some(error.to_string()));
                }
            }
        });
        EmbeddedDiscovery {
            executor,
            rx,
            _tx: tx,
            load_failed,
        }
    }

    pub fn executor(&self) -> &executor::Executor {
        &self.executor
    }

    /// Resolves with the reason if the runtime fails to load; never resolves
    /// once it has loaded.
    pub async fn load_failed(&self) -> String {
        let mut rx = self.load_failed.clone();
        let reason = rx.wait_for(Option::is_some).await.ok().and_then(|r| r.clone());
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }
}

impl Discovery for EmbeddedDiscovery {
    fn subscribe(&self) -> watch::Receiver<BackendSet> {
        self.rx.clone()
    }
}
