//! The read buffer of one side of a connection, reused for every message on it.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

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

    pub(crate) fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
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
        self.make_room(limit)?;
        // A read that leaves part of the buffer free tells tokio the socket is drained, so the
        // next read waits for epoll instead of making a read() that returns EAGAIN.
        let n = stream.read(&mut self.data[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    fn make_room(&mut self, limit: usize) -> io::Result<()> {
        if self.start > 0 && self.data.len() - self.end < INITIAL_SIZE / 2 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
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
        let mut bigger = vec![0; (self.data.len() * 2).min(limit.max(INITIAL_SIZE))];
        bigger[..self.end].copy_from_slice(&self.data[..self.end]);
        self.data = bigger.into_boxed_slice();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
