//! The read buffer of one side of a connection, reused for every message on it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Initial size of a connection's read buffers. 8 KiB: hyper's initial read buffer, and
/// nginx's `proxy_buffer_size` on 64-bit; a head larger than this grows the buffer up to the
/// head limit, once per connection.
pub(crate) const INITIAL_SIZE: usize = 8 * 1024;

/// Bytes received: `start..end` of `data` are received and not yet consumed.
pub(crate) struct Buffer {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buffer {
    pub(crate) fn new() -> Buffer {
        Buffer {
            data: vec![0; INITIAL_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// A buffer that holds no memory until its first read (see [`Spare`]).
    pub(crate) fn empty() -> Buffer {
        Buffer {
            data: Box::default(),
            start: 0,
            end: 0,
        }
    }

    pub(crate) fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Holds no memory: made by [`Buffer::empty`], not read into since.
    pub(crate) fn is_unallocated(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes the buffer holds room for.
    pub(crate) fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Appends as much of `bytes` as fits (after compacting); the caller makes sure all do.
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        if self.data.len() - self.end < bytes.len() {
            self.compact();
        }
        let n = bytes.len().min(self.data.len() - self.end);
        self.data[self.end..self.end + n].copy_from_slice(&bytes[..n]);
        self.end += n;
    }

    /// Bytes free for reading, once compacted.
    pub(crate) fn room(&self) -> usize {
        self.data.len() - (self.end - self.start)
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.clear();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// One read from `stream` after making room: compacting, or doubling the buffer while it is
    /// smaller than `limit`. Returns the bytes read (0 at the end of the stream); `InvalidData`
    /// when the unconsumed bytes already fill `limit`.
    pub(crate) async fn fill(
        &mut self,
        stream: &mut (impl AsyncRead + Unpin),
        limit: usize,
    ) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx, stream, limit)).await
    }

    /// [`Buffer::fill`] as a poll, for a caller that also writes from the buffer meanwhile.
    pub(crate) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut (impl AsyncRead + Unpin),
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        self.make_room(limit)?;
        // A read that leaves part of the buffer free tells tokio the socket is drained, so the
        // next read waits for epoll instead of making a read() that returns EAGAIN.
        let mut free = ReadBuf::new(&mut self.data[self.end..]);
        ready!(Pin::new(stream).poll_read(cx, &mut free))?;
        let n = free.filled().len();
        self.end += n;
        Poll::Ready(Ok(n))
    }

    /// Moves the unconsumed bytes to the front, so the free room is all at the end.
    fn compact(&mut self) {
        self.data.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    fn make_room(&mut self, limit: usize) -> io::Result<()> {
        if self.start > 0 && self.data.len() - self.end < INITIAL_SIZE / 2 {
            self.compact();
        }
        if self.end < self.data.len() {
            return Ok(());
        }
        if self.data.len() >= limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "buffer limit reached",
            ));
        }
        let size = (self.data.len() * 2).max(INITIAL_SIZE);
        let mut bigger = vec![0; size.min(limit.max(INITIAL_SIZE))];
        bigger[..self.end].copy_from_slice(&self.data[..self.end]);
        self.data = bigger.into_boxed_slice();
        Ok(())
    }
}

/// Most response buffers a thread keeps for connections between requests: enough for every
/// connection busy at once on a worker, without keeping a burst's worth for ever.
const MAX_SPARE: usize = 1024;

thread_local! {
    /// Response buffers of connections waiting for their next request, for the next request on
    /// this thread: an idle keep-alive connection then holds no response buffer (nginx frees
    /// its buffers between requests too), and a busy one still allocates nothing per request.
    static SPARE: std::cell::RefCell<Vec<(Buffer, Vec<u8>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The response-side buffers of a connection: lent to it for a request, given back to the
/// thread's spares while it waits for the next.
pub(crate) struct Spare;

impl Spare {
    /// Buffers for a request: spares of this thread, else new ones.
    pub(crate) fn take() -> (Buffer, Vec<u8>) {
        SPARE
            .with(|spare| spare.borrow_mut().pop())
            .unwrap_or_else(|| (Buffer::new(), Vec::with_capacity(INITIAL_SIZE)))
    }

    /// Gives buffers back (emptied) for another connection's next request.
    pub(crate) fn give(mut buffer: Buffer, mut out: Vec<u8>) {
        if buffer.data.is_empty() {
            return; // never taken: nothing to give
        }
        buffer.clear();
        out.clear();
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < MAX_SPARE {
                spare.push((buffer, out));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_buffers_go_round_emptied_and_an_empty_buffer_grows_on_first_use() {
        let (mut buffer, mut out) = Spare::take();
        buffer.data[0] = 7;
        buffer.end = 3;
        out.extend_from_slice(b"head");
        let address = buffer.data.as_ptr();
        Spare::give(buffer, out);
        let (again, out) = Spare::take();
        assert_eq!(
            again.data.as_ptr(),
            address,
            "the same memory, not a new allocation"
        );
        assert!(again.is_empty() && out.is_empty());
        // A buffer that was never taken is not kept.
        Spare::give(Buffer::empty(), Vec::new());
        let mut fresh = Buffer::empty();
        assert!(fresh.is_unallocated());
        fresh.make_room(64 * 1024).unwrap();
        assert_eq!(fresh.data.len(), INITIAL_SIZE);
    }

    #[test]
    fn room_is_made_by_compacting_then_by_growing_up_to_the_limit() {
        let mut buf = Buffer::new();
        buf.end = INITIAL_SIZE;
        buf.start = INITIAL_SIZE - 10;
        buf.make_room(INITIAL_SIZE).unwrap();
        assert_eq!((buf.start, buf.end), (0, 10));

        buf.end = INITIAL_SIZE;
        buf.make_room(3 * INITIAL_SIZE).unwrap();
        assert_eq!(buf.data.len(), 2 * INITIAL_SIZE);
        buf.end = 2 * INITIAL_SIZE;
        buf.make_room(3 * INITIAL_SIZE).unwrap();
        assert_eq!(buf.data.len(), 3 * INITIAL_SIZE);
        buf.end = 3 * INITIAL_SIZE;
        assert!(buf.make_room(3 * INITIAL_SIZE).is_err());
    }

    #[test]
    fn consuming_everything_resets_to_the_start() {
        let mut buf = Buffer::new();
        buf.data[..4].copy_from_slice(b"abcd");
        buf.end = 4;
        buf.consume(1);
        assert_eq!(buf.filled(), b"bcd");
        buf.consume(10);
        assert!(buf.is_empty());
        assert_eq!((buf.start, buf.end), (0, 0));
    }
}
