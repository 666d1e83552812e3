//! The live progress line (indicatif on stderr): elapsed, sent, rate, errors, recent p50/p99; it
//! also samples the client's in-flight count into the timeline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::stats::Recorder;

const TICK: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct Ticker {
    bar: ProgressBar,
    task: JoinHandle<()>,
}

impl Ticker {
    /// Starts ticking; the bar is hidden unless `visible` (and stderr is a terminal).
    pub fn start(recorder: Arc<Recorder>, total: Option<u64>, visible: bool) -> Ticker {
        let target = if visible {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(total, target);
        let template = if total.is_some() {
            "{spinner} {elapsed_precise} [{bar:20}] {pos}/{len} {wide_msg}"
        } else {
            "{spinner} {elapsed_precise} {pos} done {wide_msg}"
        };
        bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
        let task = {
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(TICK);
                loop {
                    interval.tick().await;
                    let now = Instant::now();
                    recorder.sample_inflight(now);
                    let p = recorder.progress(now);
                    bar.set_position(p.completed);
                    let recent = if p.rate > 0.0 {
                        format!("{:.0}/s · p50 {:.1} p99 {:.1} ms", p.rate, p.p50_ms, p.p99_ms)
                    } else {
                        "-/s · p50 - p99 - ms".to_owned()
                    };
                    bar.set_message(format!(
                        "sent {} · err {} · wrong {} · {recent} · in flight {}",
                        p.started,
                        p.errors,
                        p.wrong,
                        p.started - p.completed.min(p.started)
                    ));
                    bar.tick();
                }
            })
        };
        Ticker { bar, task }
    }

    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
