//! A client connection whose writes fail once it has accepted no byte for the send timeout: a
//! client that stops reading (slowloris reading a response) would otherwise hold its connection,
//! the endpoint connection behind it and an in-flight slot for ever.
//!
//! The timer is armed only when a write cannot proceed (the socket's buffer is full) and
//! disarmed by the next write that does, so a client that keeps up costs no timer operation:
//! the deadline is between two writes that make progress, as nginx's `send_timeout`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// When a stalled write gives up; shared by the connection and its write half.
pub(crate) struct Stall {
    timeout: Duration,
    /// Boxed on the first stall only: most connections never stall.
    sleep: Option<Pin<Box<Sleep>>>,
    /// A write is waiting and the sleep is set for it.
    armed: bool,
}

impl Stall {
    pub(crate) fn new(timeout: Duration) -> Stall {
        Stall {
            timeout,
            sleep: None,
            armed: false,
        }
    }

    /// After a write's poll: progress disarms; `Pending` arms (once per stall) and fails the
    /// write when the deadline passes.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.armed = false;
            return polled;
        }
        // The clock is read and the timer moved once per stall, not on every poll of it.
        let timeout = self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if !self.armed {
            sleep.as_mut().reset(Instant::now() + timeout);
            self.armed = true;
        }
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing within the send timeout",
        )))
    }
}

/// A writer whose stalls are bounded by a [`Stall`].
pub(crate) struct Timed<'a, W> {
    pub(crate) inner: W,
    pub(crate) stall: &'a mut Stall,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Timed<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.stall.check(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.stall.check(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.stall.check(cx, polled)
    }
}

/// A client connection with its writes bounded by a [`Stall`]: what the HTTP/1.1 loop serves.
pub(crate) struct SendTimeout<C> {
    inner: C,
    stall: Stall,
}

impl<C> SendTimeout<C> {
    pub(crate) fn new(inner: C, timeout: Duration) -> SendTimeout<C> {
        SendTimeout {
            inner,
            stall: Stall::new(timeout),
        }
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for SendTimeout<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> SendTimeout<C> {
    /// The connection's writes, bounded by its stall timer.
    fn timed(&mut self) -> Timed<'_, &mut C> {
        Timed {
            inner: &mut self.inner,
            stall: &mut self.stall,
        }
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for SendTimeout<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().timed()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().timed()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().timed()).poll_shutdown(cx)
    }
}

impl<C: super::ClientIo> super::ClientIo for SendTimeout<C> {
    fn halves(
        &mut self,
    ) -> (
        impl AsyncRead + Unpin + Send + '_,
        impl AsyncWrite + Unpin + Send + '_,
    ) {
        let (read, write) = self.inner.halves();
        let write = Timed {
            inner: write,
            stall: &mut self.stall,
        };
        (read, write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_writer_that_stops_is_cut_and_one_that_keeps_up_is_not() {
        let (mut near, far) = tokio::io::duplex(1024);
        let mut stall = Stall::new(Duration::from_millis(100));
        // Nobody reads `far`: the first KiB fits, then the write stalls and fails.
        let mut timed = Timed {
            inner: &mut near,
            stall: &mut stall,
        };
        let started = std::time::Instant::now();
        let err = timed.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
        drop(far);
        // A reader that keeps up, slower in total than the timeout: never cut.
        let (mut near, mut far) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut sink = [0u8; 64];
            let mut total = 0;
            while total < 2048 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                total += tokio::io::AsyncReadExt::read(&mut far, &mut sink)
                    .await
                    .unwrap();
            }
        });
        let mut stall = Stall::new(Duration::from_millis(100));
        let mut timed = Timed {
            inner: &mut near,
            stall: &mut stall,
        };
        timed.write_all(&[0u8; 2048]).await.unwrap();
        reader.await.unwrap();
    }
}
