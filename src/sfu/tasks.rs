//! Owned media tasks: every task the SFU spawns is counted in the `tasks` gauge for exactly as
//! long as its future lives, and belongs to a [`TaskSet`] its owner awaits on the way out.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::metrics::{GaugeGuard, Metrics};
use crate::sync::lock;

/// Spawns `fut` holding one unit of the `tasks` gauge until it ends or is aborted.
pub(crate) fn spawn_counted<F>(metrics: &Arc<Metrics>, fut: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let guard = GaugeGuard::new(metrics, |m| &m.tasks);
    tokio::spawn(async move {
        let _guard = guard;
        fut.await
    })
}

/// The tasks one owner (a participant) started. Finished handles are pruned as new ones come.
pub(crate) struct TaskSet {
    /// `None` once the owner has ended: late handles are aborted instead of kept.
    handles: Mutex<Option<Vec<JoinHandle<()>>>>,
}

impl Default for TaskSet {
    fn default() -> Self {
        Self {
            handles: Mutex::new(Some(Vec::new())),
        }
    }
}

impl TaskSet {
    pub fn push(&self, handle: JoinHandle<()>) {
        let mut handles = lock(&self.handles);
        match handles.as_mut() {
            Some(list) => {
                list.retain(|h| !h.is_finished());
                list.push(handle);
            }
            None => handle.abort(),
        }
    }

    /// Waits for every task to end by itself (its inputs are closed first by the owner), then
    /// aborts what is still running after `grace`, so nothing outlives its owner.
    pub async fn join_all(&self, grace: Duration) {
        let handles = lock(&self.handles).take().unwrap_or_default();
        let deadline = tokio::time::Instant::now() + grace;
        for mut handle in handles {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                tracing::warn!("media task did not end in time; aborting it");
                handle.abort();
                let _ = handle.await;
            }
        }
    }
}
