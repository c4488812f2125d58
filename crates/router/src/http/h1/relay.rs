//! Relaying a response body: sent to the client as it arrives, and read ahead of a client slower
//! than the endpoint (see [`crate::read_ahead`]) so that the endpoint is done with the request
//! as soon as the whole response is in the router.
//!
//! Bytes go to the client in the order they came, through two stores: the connection's response
//! buffer (grown within the memory grant) and, past it, the response's spool file. Bytes
//! received go to the buffer only while nothing waits in the spool, so none overtakes another.

use super::body::Remaining;
use super::buffer::Buffer;
use super::forward::Side;
use crate::read_ahead::{Grant, ReadAhead, Spool, CHUNK, MEMORY_PER_RESPONSE};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sends the rest of a response body from `upstream` to `client`. `buf` holds what was read
/// past the response head and not yet parsed. Once the whole body is in the router,
/// `received` is called with the endpoint connection when it may be reused (nothing came past
/// the end of the response). Returns once the client has it all, with `buf` emptied (and back
/// to [`Buffer::new`]'s size if it grew); on an error, closing both connections is all that is
/// left.
pub(super) async fn relay_body<U: AsyncRead + Unpin>(
    upstream: U,
    buf: &mut Buffer,
    client: &mut (impl AsyncWrite + Unpin),
    body: Remaining,
    read_ahead: &ReadAhead,
    received: impl FnOnce(Option<U>),
) -> Result<(), Side> {
    let mut relay = Relay {
        upstream: Some(upstream),
        body,
        unsent: 0,
        memory: Grant::new(&read_ahead.memory, MEMORY_PER_RESPONSE),
        spool_buffers: Grant::new(&read_ahead.memory, 2 * CHUNK),
        limit: buf.capacity(),
        base: buf.capacity(),
        read_ahead,
        spool: None,
        spool_failed: false,
        chunk: None,
        back: None,
        received: Some(received),
    };
    let result = match relay.parse_buffered(buf) {
        Ok(()) => poll_fn(|cx| relay.poll(cx, buf, client)).await,
        Err(side) => Err(side),
    };
    buf.clear();
    if relay.memory.bytes() > 0 {
        *buf = Buffer::new(); // the grown buffer goes back with the grant
    }
    result
}

/// The state of one body's relay.
struct Relay<'r, U, F> {
    /// The endpoint connection, until the whole body is in.
    upstream: Option<U>,
    /// What is left of the body to receive.
    body: Remaining,
    /// Body bytes at the start of the buffer, not yet sent.
    unsent: usize,
    /// Memory the buffer took past its first size.
    memory: Grant<'r>,
    /// Memory of the spool's two buffers, past the buffer's bound.
    spool_buffers: Grant<'r>,
    /// Size the buffer may grow to now.
    limit: usize,
    /// The buffer's first size, not counted in `memory`.
    base: usize,
    read_ahead: &'r ReadAhead,
    spool: Option<Spool<'r>>,
    /// A spool file could not be made: not asked again for this response.
    spool_failed: bool,
    /// The buffer bytes go to the spool in; `None` while an append has it (or with no spool).
    chunk: Option<Vec<u8>>,
    /// The buffer bytes come back from the spool in; `None` while a take has it.
    back: Option<Vec<u8>>,
    /// Called once the whole body is in; `None` after, exactly when `upstream` is `None` too.
    received: Option<F>,
}

impl<U: AsyncRead + Unpin, F: FnOnce(Option<U>)> Relay<'_, U, F> {
    /// Parses body bytes that came with the head (or before this relay began).
    fn parse_buffered(&mut self, buf: &Buffer) -> Result<(), Side> {
        self.unsent = self.body.take(buf.filled()).map_err(|_| Side::Source)?;
        if self.body.done() {
            self.finish_receiving(buf.filled().len() == self.unsent);
        }
        Ok(())
    }

    /// Moves bytes until the client has the whole body, or nothing can move now.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Buffer,
        client: &mut (impl AsyncWrite + Unpin),
    ) -> Poll<Result<(), Side>> {
        loop {
            let mut moved = self.send(cx, buf, client)?;
            moved |= self.refill(cx, buf)?;
            moved |= self.receive(cx, buf)?;
            let spooled = self.spool.as_ref().is_some_and(|s| !s.is_empty());
            if self.received.is_none() && self.unsent == 0 && !spooled {
                // A TLS stream may still hold the last record: out before the next request.
                return Pin::new(&mut *client)
                    .poll_flush(cx)
                    .map_err(|_| Side::Sink);
            }
            if !moved {
                return Poll::Pending;
            }
        }
    }

    /// Writes unsent bytes from the buffer.
    fn send(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Buffer,
        client: &mut (impl AsyncWrite + Unpin),
    ) -> Result<bool, Side> {
        let mut moved = false;
        while self.unsent > 0 {
            match Pin::new(&mut *client).poll_write(cx, &buf.filled()[..self.unsent]) {
                Poll::Ready(Ok(0) | Err(_)) => return Err(Side::Sink),
                Poll::Ready(Ok(n)) => {
                    buf.consume(n);
                    self.unsent -= n;
                    moved = true;
                }
                Poll::Pending => break,
            }
        }
        Ok(moved)
    }

    /// Once the buffer is sent, brings the oldest spooled bytes back into it.
    fn refill(&mut self, cx: &mut Context<'_>, buf: &mut Buffer) -> Result<bool, Side> {
        let Some(spool) = &mut self.spool else {
            return Ok(false);
        };
        if self.unsent > 0 {
            return Ok(false);
        }
        match spool.poll_take(cx) {
            Poll::Ready(Err(_)) => Err(Side::Source),
            Poll::Ready(Ok(Some(bytes))) => {
                // Nothing else is in the buffer while bytes wait in the spool.
                buf.clear();
                buf.put(&bytes);
                self.unsent = bytes.len();
                self.back = Some(bytes);
                Ok(true)
            }
            Poll::Ready(Ok(None)) if spool.unread() > 0 => {
                let into = self.back.take().unwrap_or_default();
                spool.take(into, buf.capacity().min(CHUNK));
                Ok(true)
            }
            Poll::Ready(Ok(None)) | Poll::Pending => Ok(false),
        }
    }

    /// Reads from the endpoint into the buffer while nothing waits in the spool and the buffer
    /// has (or may take) room, else into the spool; finishes a running append.
    fn receive(&mut self, cx: &mut Context<'_>, buf: &mut Buffer) -> Result<bool, Side> {
        let mut moved = false;
        if let Some(spool) = &mut self.spool {
            match spool.poll_append(cx) {
                Poll::Ready(Err(_)) => return Err(Side::Source),
                Poll::Ready(Ok(Some(mut chunk))) => {
                    chunk.clear();
                    self.chunk = Some(chunk);
                    moved = true;
                }
                Poll::Ready(Ok(None)) | Poll::Pending => {}
            }
        }
        if self.received.is_none() {
            return Ok(moved);
        }
        let spool_empty = self.spool.as_ref().is_none_or(Spool::is_empty);
        if spool_empty && self.has_room(buf) {
            return Ok(self.receive_into_buffer(cx, buf)? || moved);
        }
        Ok(self.receive_into_spool(cx)? || moved)
    }

    /// Whether the buffer has room for another read, growing it within the grant when little
    /// is left. A grown buffer that may grow no more takes reads again only once a quarter of
    /// it is free: else each small write to the client would make it shift all it holds to
    /// read a few bytes.
    fn has_room(&mut self, buf: &Buffer) -> bool {
        let room = buf.room();
        if self.limit > buf.capacity() || room >= buf.capacity() / 4 {
            return true; // room, or growth granted that the next read makes
        }
        if let Some(bigger) = self.memory.grow(buf.capacity(), self.base) {
            self.limit = bigger;
            return true;
        }
        room > 0 && buf.capacity() <= self.base
    }

    fn receive_into_buffer(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Buffer,
    ) -> Result<bool, Side> {
        let Some(upstream) = &mut self.upstream else {
            return Ok(false);
        };
        match buf.poll_fill(cx, upstream, self.limit) {
            Poll::Pending => Ok(false),
            Poll::Ready(Ok(0)) if matches!(self.body, Remaining::UntilClose) => {
                self.finish_receiving(true);
                Ok(true)
            }
            Poll::Ready(Ok(0) | Err(_)) => Err(Side::Source),
            Poll::Ready(Ok(_)) => {
                let take = self.body.take(&buf.filled()[self.unsent..]);
                self.unsent += take.map_err(|_| Side::Source)?;
                if self.body.done() {
                    self.finish_receiving(buf.filled().len() == self.unsent);
                }
                Ok(true)
            }
        }
    }

    fn receive_into_spool(&mut self, cx: &mut Context<'_>) -> Result<bool, Side> {
        self.open_spool();
        let (Some(spool), Some(upstream)) = (&mut self.spool, &mut self.upstream) else {
            return Ok(false); // no spool: the endpoint waits for the client
        };
        let Some(mut chunk) = self.chunk.take() else {
            return Ok(false); // an append runs: polled above, it wakes us
        };
        if !spool.reserve(CHUNK) {
            self.chunk = Some(chunk);
            return Ok(false); // the disk bound: the endpoint waits for the client
        }
        chunk.resize(CHUNK, 0);
        let mut free = ReadBuf::new(&mut chunk);
        let read = match Pin::new(upstream).poll_read(cx, &mut free) {
            Poll::Ready(Ok(())) => Some(free.filled().len()),
            Poll::Ready(Err(_)) => return Err(Side::Source),
            Poll::Pending => None,
        };
        let n = read.unwrap_or(0);
        if n == 0 {
            // Nothing read: the chunk and its room on disk wait for the next read.
            chunk.clear();
            spool.unreserve(CHUNK);
            self.chunk = Some(chunk);
            return match read {
                None => Ok(false),
                Some(_) if matches!(self.body, Remaining::UntilClose) => {
                    self.finish_receiving(true);
                    Ok(true)
                }
                Some(_) => Err(Side::Source), // the endpoint closed mid-body
            };
        }
        let take = self.body.take(&chunk[..n]).map_err(|_| Side::Source)?;
        chunk.truncate(take);
        spool.unreserve(CHUNK - take);
        spool.append(chunk);
        if self.body.done() {
            self.finish_receiving(take == n);
        }
        Ok(true)
    }

    /// Makes the response's spool file on its first need. Its two buffers are memory too: no
    /// spool without room for them (asked again on later reads, as memory frees up), nor after
    /// a file could not be made.
    fn open_spool(&mut self) {
        if self.spool.is_some() || self.spool_failed || !self.read_ahead.spools() {
            return;
        }
        if !self.spool_buffers.take(2 * CHUNK) {
            return;
        }
        self.spool = self.read_ahead.spool();
        self.spool_failed = self.spool.is_none();
        if self.spool_failed {
            self.spool_buffers.give_back(2 * CHUNK);
        } else {
            self.chunk = Some(Vec::with_capacity(CHUNK));
            self.back = Some(Vec::with_capacity(CHUNK));
        }
    }

    /// The whole body is in: the endpoint is done with the request. `clean`: nothing came
    /// past the end of the response.
    fn finish_receiving(&mut self, clean: bool) {
        let upstream = self.upstream.take().filter(|_| clean);
        if let Some(received) = self.received.take() {
            received(upstream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::body::Framing;
    use super::super::buffer::INITIAL_SIZE;
    use super::*;
    use crate::read_ahead::{DISK_TOTAL, MEMORY_TOTAL};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A response body of `len` bytes (a counting pattern, so order shows) followed by
    /// `extra`, sent by a task as fast as it is read.
    fn endpoint(len: usize, extra: &'static [u8]) -> tokio::io::DuplexStream {
        let (mut far, near) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let _ = far.write_all(&pattern(len)).await;
            let _ = far.write_all(extra).await;
            let _ = far.read_to_end(&mut Vec::new()).await; // keep the pipe open
        });
        near
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Relays a `len`-byte body to a client that reads nothing until the body is in the
    /// router (or 2 s have passed), then everything. Returns whether the body was received
    /// before the client read, whether the endpoint connection came back, and what the client
    /// got.
    async fn relay_to_a_stalled_client(
        len: usize,
        extra: &'static [u8],
        read_ahead: &ReadAhead,
    ) -> (bool, bool, Vec<u8>) {
        let upstream = endpoint(len, extra);
        let (mut client, mut reader) = tokio::io::duplex(1024);
        let back = Arc::new(Mutex::new(None));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reading = tokio::spawn(async move {
            let early = tokio::time::timeout(Duration::from_secs(2), rx)
                .await
                .is_ok();
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.unwrap();
            (early, got)
        });
        let mut buf = Buffer::new();
        let body = Remaining::new(Framing::Length(len as u64));
        let came_back = Arc::clone(&back);
        let received = move |upstream: Option<_>| {
            *came_back.lock().unwrap() = Some(upstream.is_some());
            let _ = tx.send(());
        };
        relay_body(upstream, &mut buf, &mut client, body, read_ahead, received)
            .await
            .unwrap();
        assert!(buf.is_empty() && buf.capacity() == INITIAL_SIZE);
        drop(client);
        let (early, got) = reading.await.unwrap();
        let reusable = back.lock().unwrap().unwrap();
        (early, reusable, got)
    }

    #[tokio::test]
    async fn a_response_in_memory_reach_is_received_whole_before_the_client_reads() {
        let read_ahead = ReadAhead::with_limits(MEMORY_TOTAL, 0, None);
        let len = 300 * 1024;
        let (early, reusable, got) = relay_to_a_stalled_client(len, b"", &read_ahead).await;
        assert!(early, "the endpoint was done before the client read");
        assert!(reusable);
        assert_eq!(got, pattern(len));
        assert_eq!(read_ahead.memory.free(), MEMORY_TOTAL, "memory given back");
    }

    #[tokio::test]
    async fn past_memory_a_response_goes_to_the_spool_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Some(dir.path().to_path_buf());
        // Room for one response's buffer at its bound, and the spool's two buffers.
        let memory = MEMORY_PER_RESPONSE + 2 * CHUNK;
        let read_ahead = ReadAhead::with_limits(memory, DISK_TOTAL, dir);
        let len = 3 * 1024 * 1024 + 17;
        let (early, reusable, got) = relay_to_a_stalled_client(len, b"junk", &read_ahead).await;
        assert!(early, "the endpoint was done before the client read");
        assert!(
            !reusable,
            "bytes past the end: the connection is not reused"
        );
        assert_eq!(got.len(), len);
        assert!(got == pattern(len), "in order");
    }

    #[tokio::test]
    async fn with_no_room_left_the_endpoint_waits_for_the_client() {
        let read_ahead = ReadAhead::with_limits(16 * 1024, 0, None);
        let len = 1024 * 1024;
        let (early, reusable, got) = relay_to_a_stalled_client(len, b"", &read_ahead).await;
        assert!(
            !early,
            "no room to read ahead: received only as the client read"
        );
        assert!(reusable);
        assert_eq!(got, pattern(len));
        assert_eq!(
            read_ahead.memory.free(),
            16 * 1024,
            "nothing kept for a spool"
        );
    }
}
