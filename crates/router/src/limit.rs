//! A cap on the client connections open at once. Every connection holds a file descriptor (two
//! while proxied: the client's and the endpoint's); past the process's limit nothing can be
//! opened, not a health check, not a connection to the store. Listeners refuse connections
//! past their cap at once, without touching the ones already open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// File descriptors kept out of the client-connection budget, for everything else a control
/// plane opens: the store and its WAL, agents' and the CLI's API connections, instance log
/// files and pipes, health checks, the listeners themselves. 256 leaves room for a few hundred
/// such at once; most deployments need far fewer.
pub const RESERVED_FDS: u64 = 256;

/// The fewest connections a budget allows, however low the file limit: a service must stay
/// reachable.
pub const MIN_CONNECTIONS: usize = 16;

/// How often a full listener says so in the log.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// How many client connections a process with `open_files` file descriptors may hold open:
/// half of what is left once [`RESERVED_FDS`] are kept (each proxied connection also opens one
/// to an endpoint), at least [`MIN_CONNECTIONS`].
pub fn connection_budget(open_files: u64) -> usize {
    let pairs = open_files.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(pairs)
        .unwrap_or(usize::MAX)
        .max(MIN_CONNECTIONS)
}

/// A cap on open connections, shared by the listeners given clones of it.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    /// When a refusal was last logged (ns since `epoch`, 0: never), so a flood logs little.
    warned: Arc<AtomicU64>,
    epoch: Instant,
}

/// One open connection's place under a [`ConnectionLimit`]; freed when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
}

impl ConnectionLimit {
    /// A cap of `max` connections (at least one).
    pub fn new(max: usize) -> ConnectionLimit {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionLimit {
            permits: Arc::new(Semaphore::new(max)),
            max,
            warned: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections that may still open.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// A slot for one more connection, or `None` at the cap (the caller closes the connection;
    /// the first refusal in every `FULL_WARNING_EVERY` is logged, naming `what`).
    pub fn try_acquire(&self, what: &str) -> Option<ConnectionSlot> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Some(ConnectionSlot { _permit: permit }),
            Err(_) => {
                self.warn_full(what);
                None
            }
        }
    }

    fn warn_full(&self, what: &str) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.warned.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= FULL_WARNING_EVERY.as_nanos() as u64;
        if due
            && self
                .warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max = self.max,
                "{what}: {} connections open, the most allowed; refusing new ones until some close",
                self.max
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_the_reserve_and_counts_two_descriptors_a_connection() {
        assert_eq!(connection_budget(1024), (1024 - 256) / 2);
        assert_eq!(connection_budget(20_000), (20_000 - 256) / 2);
        assert_eq!(connection_budget(100), MIN_CONNECTIONS);
        assert!(connection_budget(u64::MAX) > 1 << 40);
    }

    #[test]
    fn slots_are_refused_at_the_cap_and_come_back_when_dropped() {
        let limit = ConnectionLimit::new(2);
        let a = limit.try_acquire("test").expect("first");
        let _b = limit.try_acquire("test").expect("second");
        assert!(limit.try_acquire("test").is_none(), "past the cap");
        drop(a);
        assert!(
            limit.try_acquire("test").is_some(),
            "a freed slot is reused"
        );
        assert_eq!(ConnectionLimit::new(0).max(), 1);
    }
}
