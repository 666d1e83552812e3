//! Embedded discovery: no executors configured, so the gateway runs one in
//! its own process and is its only backend.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Backend, BackendSet, Discovery, Target};

#[derive(Debug)]
pub struct EmbeddedDiscovery {
    rx: watch::Receiver<BackendSet>,
    _tx: watch::Sender<BackendSet>,
}

impl EmbeddedDiscovery {
    pub fn new(executor: &executor::Executor) -> EmbeddedDiscovery {
        let backend = Backend::new(
            "embedded",
            executor.name(),
            Target::Local(executor::api::router(executor.clone())),
        );
        let set = BackendSet {
            ready: vec![Arc::new(backend)].into(),
            unready: 0,
        };
        let (tx, rx) = watch::channel(set);
        EmbeddedDiscovery { rx, _tx: tx }
    }
}

impl Discovery for EmbeddedDiscovery {
    fn subscribe(&self) -> watch::Receiver<BackendSet> {
        self.rx.clone()
    }
}
