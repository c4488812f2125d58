//! The part of one response that memory may not hold: an unlinked file, written at its end and
//! read back from its start, each read and write on a blocking thread so that a slow disk
//! holds up no async worker.

use super::{Budget, Grant, DISK_PER_RESPONSE};
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::task::JoinHandle;

/// Bytes moved per file operation: 64 KiB, few enough trips to a blocking thread for a fast
/// reader of a spooled response, little memory per spooled response (two such buffers).
pub(crate) const CHUNK: usize = 64 * 1024;

/// One response's spool file.
pub(crate) struct Spool<'a> {
    file: Arc<File>,
    /// Bytes in the file: finished appends.
    written: u64,
    /// Bytes read back.
    taken: u64,
    /// Disk the file may take.
    disk: Grant<'a>,
    appending: Option<JoinHandle<io::Result<Vec<u8>>>>,
    taking: Option<JoinHandle<io::Result<Vec<u8>>>>,
}

impl<'a> Spool<'a> {
    /// An unlinked file in `dir` (0600, by `O_TMPFILE` where the file system has it).
    pub(crate) fn create(dir: &Path, disk: &'a Budget) -> io::Result<Spool<'a>> {
        Ok(Spool {
            file: Arc::new(tempfile::tempfile_in(dir)?),
            written: 0,
            taken: 0,
            disk: Grant::new(disk, DISK_PER_RESPONSE),
            appending: None,
            taking: None,
        })
    }

    /// Takes room for `bytes` more on disk, if the response's bound and the budget allow.
    pub(crate) fn reserve(&mut self, bytes: usize) -> bool {
        self.disk.take(bytes)
    }

    /// Gives back room reserved and not used.
    pub(crate) fn unreserve(&mut self, bytes: usize) {
        self.disk.give_back(bytes);
    }

    /// Nothing waits in the file, nor is on its way in or out: bytes received next may go
    /// around it without overtaking any.
    pub(crate) fn is_empty(&self) -> bool {
        self.appending.is_none() && self.taking.is_none() && self.written == self.taken
    }

    /// Bytes in the file not yet read back.
    pub(crate) fn unread(&self) -> u64 {
        self.written - self.taken
    }

    /// Starts writing `chunk` at the end of the file; one append at a time.
    pub(crate) fn append(&mut self, chunk: Vec<u8>) {
        debug_assert!(self.appending.is_none());
        let (file, at) = (Arc::clone(&self.file), self.written);
        self.appending = Some(tokio::task::spawn_blocking(move || {
            file.write_all_at(&chunk, at).map(|()| chunk)
        }));
    }

    /// Waits for the running append: the chunk comes back (for the next one), `None` when no
    /// append runs.
    pub(crate) fn poll_append(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Vec<u8>>>> {
        let chunk = ready!(poll_done(&mut self.appending, cx))?;
        self.written += chunk.as_ref().map_or(0, |c| c.len() as u64);
        Poll::Ready(Ok(chunk))
    }

    /// Starts reading back the oldest unread bytes, at most `most`, into `into`; one take at a
    /// time.
    pub(crate) fn take(&mut self, mut into: Vec<u8>, most: usize) {
        debug_assert!(self.taking.is_none());
        let n = usize::try_from(self.unread()).map_or(most, |unread| unread.min(most));
        into.clear();
        into.resize(n, 0);
        let (file, at) = (Arc::clone(&self.file), self.taken);
        self.taking = Some(tokio::task::spawn_blocking(move || {
            file.read_exact_at(&mut into, at).map(|()| into)
        }));
    }

    /// Waits for the running take: the bytes read back, `None` when no take runs.
    pub(crate) fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Vec<u8>>>> {
        let bytes = ready!(poll_done(&mut self.taking, cx))?;
        self.taken += bytes.as_ref().map_or(0, |b| b.len() as u64);
        Poll::Ready(Ok(bytes))
    }
}

/// Waits for the file operation in `task`, if one runs: its buffer comes back (`None` when
/// none runs), and `task` is free for the next.
fn poll_done(
    task: &mut Option<JoinHandle<io::Result<Vec<u8>>>>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Option<Vec<u8>>>> {
    let Some(running) = task else {
        return Poll::Ready(Ok(None));
    };
    let done = ready!(Pin::new(running).poll(cx));
    *task = None;
    Poll::Ready(done.map_err(io::Error::other)?.map(Some))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn bytes_come_back_in_the_order_they_went_in_within_the_disk_bound() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Budget::new(10);
        let mut spool = Spool::create(dir.path(), &budget).unwrap();
        assert!(spool.is_empty());
        assert!(
            spool.reserve(8) && !spool.reserve(3),
            "the budget bounds it"
        );
        spool.append(b"abcde".to_vec());
        assert!(!spool.is_empty());
        let chunk = poll_fn(|cx| spool.poll_append(cx)).await.unwrap().unwrap();
        assert_eq!(chunk, b"abcde", "the chunk comes back for reuse");
        spool.append(b"fgh".to_vec());
        poll_fn(|cx| spool.poll_append(cx)).await.unwrap();
        assert_eq!(spool.unread(), 8);
        spool.take(Vec::new(), 6);
        let back = poll_fn(|cx| spool.poll_take(cx)).await.unwrap().unwrap();
        assert_eq!(back, b"abcdef");
        spool.take(back, 6);
        let back = poll_fn(|cx| spool.poll_take(cx)).await.unwrap().unwrap();
        assert_eq!(back, b"gh");
        assert!(spool.is_empty());
        assert!(poll_fn(|cx| spool.poll_take(cx)).await.unwrap().is_none());
        drop(spool);
        assert_eq!(budget.free(), 10, "the disk is given back");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the file never had a name"
        );
    }
}
