//! Reading an endpoint's response ahead of a slow client on the hyper path (HTTP/2 clients).
//!
//! hyper asks a response body for its next frame only when the client's flow-control window
//! has room, so a slow HTTP/2 reader would keep the request in flight on its instance for the
//! whole download. A response that may not fit in a window is instead pumped by its own task
//! into a queue the client's stream reads from: the task ends the request on the instance when
//! the endpoint's body ends (see [`crate::read_ahead`]). Memory only: at most
//! [`MEMORY_PER_RESPONSE`] queued per response, within the router's memory budget; past either,
//! the task waits until the client has taken everything queued, then passes one frame at a time
//! (the endpoint goes at the client's pace, as without read-ahead).

use super::tracking::Tracking;
use crate::read_ahead::{ReadAhead, MEMORY_PER_RESPONSE};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame, Incoming};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, Notify};

/// Responses up to this size are relayed directly: 16 KiB fit in any HTTP/2 window (the
/// protocol's initial window is 65,535 bytes), so their client never holds them up, and they
/// cost no task.
pub(crate) const DIRECT_UP_TO: u64 = 16 * 1024;

/// Frames queued per response, whatever their size.
const QUEUED_FRAMES: usize = 64;

/// One queued frame, and whether its bytes were taken from the memory budget.
type Queued = (Result<Frame<Bytes>, hyper::Error>, bool);

/// What the pump and the client's side share about the queue.
struct Shared {
    read_ahead: Arc<ReadAhead>,
    /// Data bytes queued.
    bytes: AtomicUsize,
    /// Signalled when the client's side emptied the queue.
    emptied: Notify,
}

/// The client's side of a pumped response.
pub(crate) struct Pumped {
    rx: mpsc::Receiver<Queued>,
    shared: Arc<Shared>,
}

/// Starts pumping `body` (the request's `tracking` ends when the body has been read whole).
pub(crate) fn start(body: Incoming, tracking: Tracking, read_ahead: &Arc<ReadAhead>) -> Pumped {
    let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
    let shared = Arc::new(Shared {
        read_ahead: Arc::clone(read_ahead),
        bytes: AtomicUsize::new(0),
        emptied: Notify::new(),
    });
    tokio::spawn(pump(body, tracking, tx, Arc::clone(&shared)));
    Pumped { rx, shared }
}

/// Reads the endpoint's body into the queue; the request ends on the instance when the body
/// does (or breaks, or the client went away).
async fn pump(
    mut body: Incoming,
    tracking: Tracking,
    tx: mpsc::Sender<Queued>,
    shared: Arc<Shared>,
) {
    while let Some(frame) = body.frame().await {
        let len = frame
            .as_ref()
            .ok()
            .and_then(Frame::data_ref)
            .map_or(0, Bytes::len);
        let reserved = shared.reserve(len);
        if !reserved {
            // No room: wait until the client has everything queued, then pass this one frame.
            let emptied = shared.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable(); // registered before the check: no wake-up is missed
            if shared.bytes.load(Ordering::Acquire) > 0 {
                emptied.await;
            }
        }
        shared.bytes.fetch_add(len, Ordering::AcqRel);
        let broken = frame.is_err();
        if tx.send((frame, reserved)).await.is_err() {
            return; // the client went away (its side gave the queue's memory back)
        }
        if broken {
            break;
        }
    }
    drop(tracking);
}

impl Shared {
    /// Takes `len` bytes of the memory budget, within the per-response bound.
    fn reserve(&self, len: usize) -> bool {
        let queued = self.bytes.load(Ordering::Acquire);
        queued.saturating_add(len) <= MEMORY_PER_RESPONSE && self.read_ahead.memory.reserve(len)
    }

    /// The client's side took a frame of `len` bytes.
    fn taken(&self, len: usize, reserved: bool) {
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
                let len = frame
                    .as_ref()
                    .ok()
                    .and_then(Frame::data_ref)
                    .map_or(0, Bytes::len);
                self.shared.taken(len, reserved);
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
            let len = frame
                .as_ref()
                .ok()
                .and_then(Frame::data_ref)
                .map_or(0, Bytes::len);
            self.shared.taken(len, reserved);
        }
    }
}
