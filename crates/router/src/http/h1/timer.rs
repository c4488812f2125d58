//! A per-connection timer armed lazily: moving its deadline later costs no timer operation.
//!
//! Every request on a keep-alive connection has two deadlines (the head must arrive within the
//! header timeout; the response head within the request timeout). Registering and cancelling a
//! tokio timer for each would take the timer wheel's lock twice per request. Instead each
//! connection keeps one registered [`Sleep`] per kind of deadline and only records the new
//! deadline; when the sleep fires early (the deadline moved), it is re-armed once. A timer
//! fires at most once per timeout period per connection, however many requests pass.

use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::time::Sleep;

pub(crate) struct LazyTimer {
    sleep: Pin<Box<Sleep>>,
    deadline: Instant,
}

impl LazyTimer {
    pub(crate) fn new(deadline: Instant) -> LazyTimer {
        LazyTimer {
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
            deadline,
        }
    }

    /// Sets the deadline to `timeout` from `now`.
    pub(crate) fn start(&mut self, now: Instant, timeout: Duration) {
        let deadline = now + timeout;
        // Only an earlier deadline needs the timer itself moved (the timeouts are fixed, so
        // deadlines only move later in practice).
        if deadline < self.sleep.deadline().into_std() {
            self.sleep.as_mut().reset(deadline.into());
        }
        self.deadline = deadline;
    }

    /// Completes once the current deadline has passed.
    pub(crate) async fn expired(&mut self) {
        loop {
            self.sleep.as_mut().await;
            if Instant::now() >= self.deadline {
                return;
            }
            self.sleep.as_mut().reset(self.deadline.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn a_deadline_moved_later_is_honoured_and_an_earlier_one_too() {
        let start = Instant::now();
        let mut timer = LazyTimer::new(start + 20 * MS);
        timer.start(start, 150 * MS);
        timer.expired().await;
        assert!(start.elapsed() >= 150 * MS, "{:?}", start.elapsed());

        let now = Instant::now();
        timer.start(now, 60 * 1000 * MS);
        timer.start(now, 30 * MS);
        tokio::time::timeout(10 * 1000 * MS, timer.expired())
            .await
            .expect("the earlier deadline fired");
        assert!(now.elapsed() >= 30 * MS);
    }
}
