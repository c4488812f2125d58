//! Running a blocking store call without holding up tokio's async workers.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work`, which may block on a disk or a network, off the async workers: on a worker of
/// tokio's multi-threaded runtime, `block_in_place` first hands the worker's other tasks
/// (heartbeats, API calls) to another thread; on a blocking thread, or with no runtime, it
/// simply runs. (A current-thread runtime has nowhere to hand its tasks; it waits, as it must.)
pub(crate) fn off_async_workers<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
