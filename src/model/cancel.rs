//! The subtask's one cancel switch, shared by the stages of the data path and the
//! destination and warehouse clients they call (which check it between requests).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The subtask's one cancel switch: set once, seen by every stage between batches.
#[derive(Debug, Clone, Default)]
pub struct CancelSwitch(Arc<AtomicBool>);

impl CancelSwitch {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Resolves once the switch is set (checked every 50 ms): for `select!` in async stages.
    pub async fn cancelled(&self) {
        while !self.is_cancelled() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
