//! Serving an HTTP/2 connection (h2c, or h2 over TLS) with hyper, and ending it: when the proxy
//! stops, when it has had no stream open for the idle timeout, and when one of its clients
//! stopped reading (see [`super::pump`]).

use super::{h1, Peer, Proxy};
use crate::atomic_instant::AtomicInstant;
use hyper::body::Body;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Serves the connection until it ends. It is asked to finish (GOAWAY: no new streams, open
/// ones complete) when the proxy stops, or once it has had no stream open for the idle timeout:
/// an idle connection holds a place under the cap. A client that does not take part in the
/// close (hyper's GOAWAY waits for a PING answer) is dropped once the header timeout has passed
/// with no stream open.
pub(super) async fn serve<S>(
    builder: &auto::Builder<TokioExecutor>,
    registration: h1::Registration,
    proxy: Proxy,
    client: Peer,
    peer: SocketAddr,
    stream: S,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = Limits {
        idle: proxy.inner.config.h2_idle_timeout,
        close_grace: proxy.inner.config.header_read_timeout,
    };
    let activity = Arc::new(Activity::new(Instant::now()));
    let seen = Arc::clone(&activity);
    let client = Peer {
        connection: Some(Arc::clone(&activity)),
        ..client
    };
    let service = service_fn(move |req| {
        let stream = Activity::open(&seen, Instant::now());
        let proxy = proxy.clone();
        let client = client.clone();
        async move {
            let response = proxy.handle(req, client).await;
            Ok::<_, Infallible>(response.map(|body| Counted {
                body,
                _stream: stream,
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let timer = tokio::time::sleep(limits.idle);
    tokio::pin!(timer);
    let signal = &registration.signal;
    let mut closing: Option<Instant> = None; // when the connection was asked to finish
    let ended = loop {
        let step = tokio::select! {
            ended = conn.as_mut() => break ended,
            () = activity.stalled.notified() => {
                tracing::debug!(%peer, "HTTP/2 client stopped reading: connection dropped");
                return;
            }
            () = signal.stopped(), if closing.is_none() => Step::Finish,
            () = timer.as_mut() => limits.step(closing, activity.quiet_since(), Instant::now()),
        };
        match step {
            Step::Finish => {
                let now = Instant::now();
                conn.as_mut().graceful_shutdown();
                closing = Some(now);
                timer.as_mut().reset((now + limits.close_grace).into());
            }
            Step::Drop => return,
            Step::WaitUntil(at) => timer.as_mut().reset(at.into()),
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%peer, %error, "client connection ended with an error");
    }
}

/// How long a connection may stay idle, and then take to close.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// No stream open this long: asked to finish.
    idle: Duration,
    /// Asked to finish and no stream open this long since: dropped.
    close_grace: Duration,
}

/// What the connection's timer leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Ask it to finish (GOAWAY).
    Finish,
    /// Drop it: asked to finish, and it did not.
    Drop,
    /// Look again then.
    WaitUntil(Instant),
}

impl Limits {
    /// The timer fired at `now`; `closing`: when the connection was asked to finish, if it
    /// was; `quiet_since`: since when no stream is open (`None` while one is).
    fn step(self, closing: Option<Instant>, quiet_since: Option<Instant>, now: Instant) -> Step {
        let Some(quiet) = quiet_since else {
            return Step::WaitUntil(now + self.idle); // a stream is open: nothing to end
        };
        match closing {
            None if now >= quiet + self.idle => Step::Finish,
            None => Step::WaitUntil(quiet + self.idle),
            Some(asked) if now >= quiet.max(asked) + self.close_grace => Step::Drop,
            Some(asked) => Step::WaitUntil(quiet.max(asked) + self.close_grace),
        }
    }
}

/// The streams of an HTTP/2 connection: how many are open and when the last one opened or
/// ended; and the word from a pumped response that its client stopped reading.
pub(crate) struct Activity {
    open: AtomicUsize,
    last: AtomicInstant,
    /// Signalled when a response's client took nothing for the send timeout: the connection
    /// is dropped (hyper offers no way to reset one stream from outside it, and a client that
    /// stopped reading one stream has stopped reading the connection).
    stalled: tokio::sync::Notify,
}

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity {
            open: AtomicUsize::new(0),
            last: AtomicInstant::new(now),
            stalled: tokio::sync::Notify::new(),
        }
    }

    /// A response's client took nothing for the send timeout.
    pub(crate) fn client_stalled(&self) {
        self.stalled.notify_one();
    }

    /// A stream opens at `now`; it stays open until the returned guard drops.
    fn open(this: &Arc<Activity>, now: Instant) -> OpenStream {
        this.open.fetch_add(1, Ordering::AcqRel);
        this.last.set(now);
        OpenStream(Arc::clone(this))
    }

    /// Since when no stream is open: when the last one opened or ended (or the connection
    /// began); `None` while one is open.
    fn quiet_since(&self) -> Option<Instant> {
        (self.open.load(Ordering::Acquire) == 0).then(|| self.last.get())
    }
}

/// One open stream of an HTTP/2 connection, counted until its response body is done (or the
/// request was dropped).
struct OpenStream(Arc<Activity>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.last.set(Instant::now());
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its stream counted as open until it is done.
struct Counted<B> {
    body: B,
    _stream: OpenStream,
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_is_asked_to_finish_then_dropped_but_never_with_a_stream_open() {
        let s = Duration::from_secs;
        let limits = Limits {
            idle: s(75),
            close_grace: s(10),
        };
        let t0 = Instant::now();
        assert_eq!(
            limits.step(None, None, t0 + s(500)),
            Step::WaitUntil(t0 + s(575))
        );
        assert_eq!(
            limits.step(None, Some(t0), t0 + s(30)),
            Step::WaitUntil(t0 + s(75))
        );
        assert_eq!(limits.step(None, Some(t0), t0 + s(75)), Step::Finish);
        let asked = t0 + s(75);
        assert_eq!(
            limits.step(Some(asked), Some(t0), asked),
            Step::WaitUntil(t0 + s(85))
        );
        assert_eq!(limits.step(Some(asked), Some(t0), t0 + s(85)), Step::Drop);
        // A stream that ended after the ask counts the grace from its end.
        let ended = t0 + s(80);
        assert_eq!(
            limits.step(Some(asked), Some(ended), t0 + s(85)),
            Step::WaitUntil(t0 + s(90))
        );
        assert_eq!(
            limits.step(Some(asked), None, t0 + s(200)),
            Step::WaitUntil(t0 + s(275))
        );
    }
}
