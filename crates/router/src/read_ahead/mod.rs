//! How far the router reads a response ahead of a slow client, so that the instance is done
//! with the request early.
//!
//! A client that reads slowly (a phone on a bad network, or someone doing it on purpose) would
//! otherwise keep its request in flight on the instance for as long as the download takes: the
//! instance looks busy to least-request balancing and to the autoscaler, and a drain waits for
//! the download. Instead the router reads the response ahead of the client, and the request
//! ends on the instance once the last byte of the response is in the router (Envoy's upstream
//! active requests count the instance's work the same way). The kernel's socket buffers
//! already absorb a few MiB on each side; past them the response goes to the connection's
//! memory buffer, up to [`MEMORY_PER_RESPONSE`], then to an unlinked file in the spool
//! directory, up to [`DISK_PER_RESPONSE`], as nginx's `proxy_buffering` does with its temp
//! files.
//!
//! Every byte is bounded twice, per response and for the whole router ([`MEMORY_TOTAL`],
//! [`DISK_TOTAL`]): whatever the number of slow readers, they cannot make the router hold more.
//! Past a bound the router reads no further ahead, and the instance's writes wait for the
//! client as they would without the router; nothing fails. A disk that fails a spool write
//! (full, broken) ends that response, as nginx's temp files do.

mod spool;

pub(crate) use spool::{Spool, CHUNK};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Most of one response held in memory ahead of its client: 1 MiB, Envoy's default
/// `per_connection_buffer_limit_bytes`.
pub const MEMORY_PER_RESPONSE: usize = 1 << 20;

/// Most memory all responses together hold ahead of their clients: 64 MiB, 64 responses at
/// the per-response bound.
pub const MEMORY_TOTAL: usize = 64 << 20;

/// Most of one response spooled to disk: 1 GiB, nginx's default `proxy_max_temp_file_size`.
pub const DISK_PER_RESPONSE: usize = 1 << 30;

/// Most disk all spooled responses together take: 2 GiB, so that slow readers cannot fill the
/// disk the store and the logs live on.
pub const DISK_TOTAL: usize = 2 << 30;

/// The read-ahead limits shared by every listener of a router.
#[derive(Debug)]
pub struct ReadAhead {
    pub(crate) memory: Budget,
    disk: Budget,
    /// Where spool files go; `None`: memory only.
    spool_dir: Option<PathBuf>,
    /// A spool file could not be made: said once, not for every response.
    spool_failed: AtomicBool,
}

impl ReadAhead {
    /// Read-ahead in memory only.
    pub fn in_memory() -> ReadAhead {
        ReadAhead::with_limits(MEMORY_TOTAL, 0, None)
    }

    /// Read-ahead in memory, then in files of `dir`, created private to the owner if missing.
    /// The files are unlinked from the start: nothing is left behind, even after a crash.
    pub fn with_spool(dir: &Path) -> std::io::Result<ReadAhead> {
        ebb_core::files::create_private_dir(dir)?;
        Ok(ReadAhead::with_limits(
            MEMORY_TOTAL,
            DISK_TOTAL,
            Some(dir.to_path_buf()),
        ))
    }

    /// Limits of `memory` and `disk` bytes in all (tests use small ones).
    pub fn with_limits(memory: usize, disk: usize, spool_dir: Option<PathBuf>) -> ReadAhead {
        ReadAhead {
            memory: Budget::new(memory),
            disk: Budget::new(disk),
            spool_dir,
            spool_failed: AtomicBool::new(false),
        }
    }

    /// Whether responses may spool to disk at all.
    pub(crate) fn spools(&self) -> bool {
        self.spool_dir.is_some()
    }

    /// A new spool file, if there is a spool directory and the file can be made. (Opening it
    /// is the one file operation on the async worker: an `O_TMPFILE` open writes no data.)
    pub(crate) fn spool(&self) -> Option<Spool<'_>> {
        let dir = self.spool_dir.as_deref()?;
        match Spool::create(dir, &self.disk) {
            Ok(spool) => Some(spool),
            Err(error) => {
                if !self.spool_failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(dir = %dir.display(), %error, "cannot spool responses to disk; slow clients are fed at their pace");
                }
                None
            }
        }
    }
}

/// Bytes that responses may take for reading ahead.
#[derive(Debug)]
pub(crate) struct Budget {
    free: AtomicUsize,
}

impl Budget {
    pub(crate) const fn new(total: usize) -> Budget {
        Budget {
            free: AtomicUsize::new(total),
        }
    }

    /// Takes `bytes` if that many are free.
    pub(crate) fn reserve(&self, bytes: usize) -> bool {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(bytes)
            })
            .is_ok()
    }

    pub(crate) fn release(&self, bytes: usize) {
        self.free.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Bytes free right now.
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        self.free.load(Ordering::Acquire)
    }
}

/// What one response took from a [`Budget`], within `cap`: given back when dropped.
#[derive(Debug)]
pub(crate) struct Grant<'a> {
    budget: &'a Budget,
    cap: usize,
    bytes: usize,
}

impl<'a> Grant<'a> {
    pub(crate) fn new(budget: &'a Budget, cap: usize) -> Grant<'a> {
        Grant {
            budget,
            cap,
            bytes: 0,
        }
    }

    /// Bytes taken so far.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `more` bytes if the cap and the budget allow.
    pub(crate) fn take(&mut self, more: usize) -> bool {
        let within = self
            .bytes
            .checked_add(more)
            .is_some_and(|all| all <= self.cap);
        if !within || !self.budget.reserve(more) {
            return false;
        }
        self.bytes += more;
        true
    }

    /// Gives back `less` of the bytes taken.
    pub(crate) fn give_back(&mut self, less: usize) {
        let less = less.min(self.bytes);
        self.bytes -= less;
        self.budget.release(less);
    }

    /// The size a full buffer of `capacity` may grow to: double, within the cap and the
    /// budget; `None` when it may not grow. The buffer's own first `base` bytes are not the
    /// budget's: only growth past them is taken.
    pub(crate) fn grow(&mut self, capacity: usize, base: usize) -> Option<usize> {
        let target = capacity
            .saturating_mul(2)
            .min(self.cap.saturating_add(base));
        let more = target.checked_sub(capacity).filter(|&more| more > 0)?;
        self.take(more).then_some(target)
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_doubles_within_its_cap_and_the_budget_and_gives_back_on_drop() {
        let budget = Budget::new(3 * 1024);
        let mut grant = Grant::new(&budget, 8 * 1024);
        assert_eq!(grant.grow(1024, 1024), Some(2 * 1024));
        assert_eq!(grant.grow(2 * 1024, 1024), Some(4 * 1024));
        assert_eq!(budget.free(), 0);
        assert_eq!(grant.grow(4 * 1024, 1024), None, "the budget is spent");
        let mut other = Grant::new(&budget, 2 * 1024);
        assert!(!other.take(1));
        drop(grant);
        assert_eq!(budget.free(), 3 * 1024, "given back on drop");
        assert!(other.take(2 * 1024));
        assert!(!other.take(1), "not past its cap");
        assert_eq!(other.grow(2 * 1024, 0), None);
        other.give_back(1024);
        assert_eq!((other.bytes(), budget.free()), (1024, 2 * 1024));
    }
}
