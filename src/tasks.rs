//! Request work that must run to the end once it has started.

use std::future::Future;

use tokio::task::JoinError;
use tokio_util::task::TaskTracker;

/// Tracker of request work that runs on tasks of its own. A handler future
/// is dropped when its client disconnects or its deadline passes, which
/// could stop it between an Intercom call and the database write that
/// records it. A spawned task runs on, and shutdown waits for it within its
/// grace period.
#[derive(Clone, Default)]
pub struct RequestTasks(TaskTracker);

impl RequestTasks {
    /// Runs `work` to completion on its own task and returns its output.
    /// The error is a panic inside `work`.
    pub async fn run<F>(&self, work: F) -> Result<F::Output, JoinError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.spawn(work).await
    }

    /// Stops accepting work and waits for the running tasks.
    pub async fn close_and_wait(&self) {
        self.0.close();
        self.0.wait().await;
    }
}
