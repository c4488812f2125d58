//! What every background loop of the control plane does between its passes, written once: wait
//! for the next reason to run unless asked to stop, and run a pass off the async threads.
//!
//! The loops (the service controller, the autoscaler, the router's sync and sampling, store
//! compaction) differ only in what wakes them and what a pass does.

use std::fmt::Display;
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// Waits for `wake` unless `stop` is cancelled first (or already was): `Some` with what woke
/// the loop, `None` when the loop should end.
pub async fn next<T>(stop: &CancellationToken, wake: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => None,
        woke = wake => Some(woke),
    }
}

/// Runs `pass` on a blocking thread: passes read and write the store, and the API's async
/// threads must not wait on a disk. A failure or a panic is logged (`"{what} failed; will
/// retry"`) and gives `None`: the loop goes on, and its next pass tries again.
pub async fn blocking_pass<T, E>(
    what: &'static str,
    pass: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Option<T>
where
    T: Send + 'static,
    E: Display + Send + 'static,
{
    match tokio::task::spawn_blocking(pass).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "{what} failed; will retry");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "{what} panicked; will retry");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn next_gives_what_woke_the_loop_until_stopped() {
        let stop = CancellationToken::new();
        assert_eq!(next(&stop, async { 7 }).await, Some(7));
        stop.cancel();
        let forever = tokio::time::sleep(Duration::from_secs(3600));
        assert_eq!(next(&stop, forever).await, None);
        assert_eq!(
            next(&stop, async { 7 }).await,
            None,
            "a stop wins over a ready wake"
        );
    }

    #[tokio::test]
    async fn a_failed_or_panicking_pass_gives_none() {
        assert_eq!(blocking_pass("ok", || Ok::<_, String>(3)).await, Some(3));
        assert_eq!(blocking_pass("fails", || Err::<u8, _>("no")).await, None);
        let panics = || -> Result<u8, String> { panic!("boom") };
        assert_eq!(blocking_pass("panics", panics).await, None);
    }
}
