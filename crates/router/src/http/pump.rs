//! Reading an endpoint's response ahead of a slow client on the hyper path (HTTP/2 clients).
//!
//! hyper asks a response body for its next frame only when the client's flow-control window
//! has room, so a slow HTTP/2 reader would keep the request in flight on its instance for the
//! whole download. A response that may not fit in a window is instead pumped by its own task
//! into a queue the client's stream reads from: the task ends the request on the instance when
//! the endpoint's body ends (see [`crate::read_ahead`]). Memory only: at most
//! [`MEMORY_PER_RESPONSE`] queued per response, within the router's memory budget; past either,
//! the task waits until the client has taken everything queued, then passes one frame at a time
//! (the endpoint goes at the client's pace, as without read-ahead). A client that takes nothing
//! for the send timeout while the pump waits on it has stopped reading: the pump ends the
//! request and has the client's connection dropped, as the HTTP/1.1 path cuts such a client off.

use super::h2::Activity;
use super::tracking::Tracking;
use crate::atomic_instant::AtomicInstant;
use crate::read_ahead::{ReadAhead, MEMORY_PER_RESPONSE};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame, Incoming};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// Responses up to this size are relayed directly: 16 KiB fit in any HTTP/2 window (the
/// protocol's initial window is 65,535 bytes), so their client never holds them up, and they
/// cost no task.
pub(crate) const DIRECT_UP_TO: u64 = 16 * 1024;

/// Frames queued per response, whatever their size.
const QUEUED_FRAMES: usize = 64;

/// One queued frame, and whether its bytes were taken from the memory budget.
type Queued = (Result<Frame<Bytes>, hyper::Error>, bool);

/// What a pump needs from its proxy and its client's connection.
pub(crate) struct Settings<'a> {
    pub(crate) read_ahead: &'a Arc<ReadAhead>,
    /// A client that takes nothing for this long while the pump waits on it stopped reading.
    pub(crate) send_timeout: Duration,
    /// The client's HTTP/2 connection, told when its client stopped reading.
    pub(crate) connection: Option<Arc<Activity>>,
}

/// What the pump and the client's side share about the queue.
struct Shared {
    read_ahead: Arc<ReadAhead>,
    /// Data bytes queued.
    bytes: AtomicUsize,
    /// Signalled when the client's side emptied the queue.
    emptied: Notify,
    /// When the client's side last took a frame (at first: when the pump started).
    last_taken: AtomicInstant,
}

/// The client's side of a pumped response.
pub(crate) struct Pumped {
    rx: mpsc::Receiver<Queued>,
    shared: Arc<Shared>,
}

/// Starts pumping `body` (the request's `tracking` ends when the body has been read whole).
pub(crate) fn start(body: Incoming, tracking: Tracking, settings: Settings<'_>) -> Pumped {
    let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
    let shared = Arc::new(Shared {
        read_ahead: Arc::clone(settings.read_ahead),
        bytes: AtomicUsize::new(0),
        emptied: Notify::new(),
        last_taken: AtomicInstant::new(Instant::now()),
    });
    let client = Client {
        send_timeout: settings.send_timeout,
        connection: settings.connection,
    };
    tokio::spawn(pump(body, tracking, tx, Arc::clone(&shared), client));
    Pumped { rx, shared }
}

/// The pump's view of the client.
struct Client {
    send_timeout: Duration,
    connection: Option<Arc<Activity>>,
}

/// Reads the endpoint's body into the queue; the request ends on the instance when the body
/// does (or breaks, or the client went away or stopped reading).
async fn pump(
    mut body: Incoming,
    tracking: Tracking,
    tx: mpsc::Sender<Queued>,
    shared: Arc<Shared>,
    client: Client,
) {
    if let Filled::Stalled = fill(&mut body, &tx, &shared, client.send_timeout).await {
        if let Some(connection) = &client.connection {
            connection.client_stalled();
        }
    }
    drop(tracking);
}

/// The data bytes a frame carries (none for trailers or an error).
fn data_len(frame: &Result<Frame<Bytes>, hyper::Error>) -> usize {
    frame
        .as_ref()
        .ok()
        .and_then(Frame::data_ref)
        .map_or(0, Bytes::len)
}

/// How filling the queue ended.
enum Filled {
    /// The body ended or broke, or the client went away.
    Done,
    /// The client took nothing for the send timeout while the pump waited on it.
    Stalled,
}

/// Moves the body's frames into the queue, within the memory bounds.
async fn fill(
    body: &mut Incoming,
    tx: &mpsc::Sender<Queued>,
    shared: &Shared,
    send_timeout: Duration,
) -> Filled {
    while let Some(frame) = body.frame().await {
        let len = data_len(&frame);
        let reserved = shared.reserve(len);
        if !reserved {
            // No room: wait until the client has everything queued, then pass this one frame.
            let emptied = shared.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable(); // registered before the check: no wake-up is missed
            if shared.bytes.load(Ordering::Acquire) > 0
                && shared.unless_stalled(send_timeout, emptied).await.is_none()
            {
                return Filled::Stalled;
            }
        }
        shared.bytes.fetch_add(len, Ordering::AcqRel);
        let broken = frame.is_err();
        match shared
            .unless_stalled(send_timeout, tx.send((frame, reserved)))
            .await
        {
            None => return Filled::Stalled,
            Some(Err(_)) => return Filled::Done, // the client went away (its side freed the queue)
            Some(Ok(())) if broken => return Filled::Done,
            Some(Ok(())) => {}
        }
    }
    Filled::Done
}

impl Shared {
    /// Waits for `wait`, which needs the client to take frames, unless the client takes none
    /// for `send_timeout`: `None` then.
    async fn unless_stalled<T>(
        &self,
        send_timeout: Duration,
        wait: impl Future<Output = T>,
    ) -> Option<T> {
        tokio::pin!(wait);
        loop {
            let stalled_at = self.last_taken.get() + send_timeout;
            match tokio::time::timeout_at(stalled_at.into(), &mut wait).await {
                Ok(done) => return Some(done),
                Err(_) if self.last_taken.get() + send_timeout <= Instant::now() => return None,
                Err(_) => {} // it took a frame meanwhile: the timeout counts from then
            }
        }
    }

    /// Takes `len` bytes of the memory budget, within the per-response bound.
    fn reserve(&self, len: usize) -> bool {
        let queued = self.bytes.load(Ordering::Acquire);
        queued.saturating_add(len) <= MEMORY_PER_RESPONSE && self.read_ahead.memory.reserve(len)
    }

    /// The client's side took a frame of `len` bytes.
    fn taken(&self, len: usize, reserved: bool) {
        self.last_taken.set(Instant::now());
        if reserved {
            self.read_ahead.memory.release(len);
        }
        if self.bytes.fetch_sub(len, Ordering::AcqRel) == len {
            self.emptied.notify_waiters();
        }
    }
}

impl Pumped {
    /// The next frame for the client.
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.rx.poll_recv(cx).map(|queued| {
            queued.map(|(frame, reserved)| {
                self.shared.taken(data_len(&frame), reserved);
                frame
            })
        })
    }
}

impl Drop for Pumped {
    /// The client went away: what is still queued gives its memory back.
    fn drop(&mut self) {
        self.rx.close();
        while let Ok((frame, reserved)) = self.rx.try_recv() {
            self.shared.taken(data_len(&frame), reserved);
        }
    }
}
