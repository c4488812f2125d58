//! Telling HTTP/1.1 connections to finish: a graceful stop without a shared lock per request.
//!
//! Each connection has its own [`Signal`] (a flag and a waker slot, both lock-free) that it
//! checks between requests and waits on while idle. The proxy keeps a weak reference to every
//! signal: stopping sets each flag and wakes each idle connection, which closes; a connection in
//! the middle of a request finishes it, answers with `Connection: close`, and closes. The proxy
//! knows all of them are gone when every clone of the `done` sender they hold has dropped.

use atomic_waker::AtomicWaker;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use tokio::sync::mpsc;

/// One connection's stop signal.
#[derive(Default)]
pub(crate) struct Signal {
    stop: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Completes once the proxy is stopping.
    pub(crate) async fn stopped(&self) {
        poll_fn(|cx| {
            if self.stopping() {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.stopping() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// What a connection task holds: its signal, and a token whose drop tells the proxy it ended.
pub(crate) struct Registration {
    pub(crate) signal: Arc<Signal>,
    _done: mpsc::Sender<()>,
}

/// The HTTP/1.1 connections of one proxy.
pub(crate) struct Connections {
    signals: Mutex<Signals>,
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
}

/// Weak references to every connection's signal.
#[derive(Default)]
struct Signals {
    list: Vec<Weak<Signal>>,
    /// The list's length after the last sweep of ended connections: sweeping when it doubles
    /// keeps registration amortized O(1) and the list at most twice the live connections.
    swept_len: usize,
}

impl Connections {
    pub(crate) fn new() -> Connections {
        let (done_tx, done_rx) = mpsc::channel(1);
        Connections {
            signals: Mutex::default(),
            done_tx,
            done_rx,
        }
    }

    /// A new connection's registration (once per connection, not per request).
    pub(crate) fn register(&self) -> Registration {
        let signal = Arc::new(Signal::default());
        let mut signals = self.signals.lock().unwrap_or_else(|e| e.into_inner());
        if signals.list.len() >= 2 * signals.swept_len.max(64) {
            signals.list.retain(|s| s.strong_count() > 0);
            signals.swept_len = signals.list.len();
        }
        signals.list.push(Arc::downgrade(&signal));
        Registration {
            signal,
            _done: self.done_tx.clone(),
        }
    }

    /// Tells every connection to finish, and waits until all have ended.
    pub(crate) async fn stop(self) {
        let Connections {
            signals,
            done_tx,
            mut done_rx,
        } = self;
        let signals = signals.into_inner().unwrap_or_else(|e| e.into_inner());
        for signal in signals.list.iter().filter_map(Weak::upgrade) {
            signal.stop();
        }
        drop(done_tx);
        // Every sender is held by a live connection: None once the last has ended.
        while done_rx.recv().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn stop_wakes_idle_connections_and_waits_for_all() {
        let connections = Connections::new();
        let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..200 {
            let registration = connections.register();
            let ended = ended.clone();
            tokio::spawn(async move {
                registration.signal.stopped().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                ended.fetch_add(1, Ordering::SeqCst);
                drop(registration);
            });
        }
        tokio::time::timeout(Duration::from_secs(5), connections.stop())
            .await
            .expect("all connections ended");
        assert_eq!(ended.load(Ordering::SeqCst), 200);
    }

    #[test]
    fn ended_connections_are_swept_from_the_list() {
        let connections = Connections::new();
        for _ in 0..1000 {
            drop(connections.register());
        }
        assert!(connections.signals.lock().unwrap().list.len() <= 128);
    }
}
