//! The demo's load generator: a set of keep-alive HTTP/1.1 clients, each sending one GET after
//! the other, whose number the demo changes phase by phase. Every answer is counted: 200 is ok,
//! anything else (another status, a broken connection, no answer in time) failed, with why.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Longest wait for an answer: the service's queue_timeout (30 s) with room to spare. A
/// request held at zero is answered well within it.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(40);
/// Longest wait for a TCP connection to the router.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// Distinct failure reasons kept; more are counted as "other".
const MAX_REASONS: usize = 20;

/// Outcomes of every request so far.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    /// Failures by reason ("HTTP 503", "connection: ...").
    pub reasons: BTreeMap<String, u64>,
}

impl Tally {
    fn fail(&mut self, reason: String) {
        self.failed += 1;
        let key = if self.reasons.len() < MAX_REASONS || self.reasons.contains_key(&reason) {
            reason
        } else {
            "other".to_string()
        };
        *self.reasons.entry(key).or_default() += 1;
    }
}

/// A shared handle on the tally, for the live view.
pub type Counter = Arc<Mutex<Tally>>;

/// The tally behind a [`Counter`] now.
pub fn read(counter: &Counter) -> Tally {
    counter.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// How one request ended.
pub enum Outcome {
    Ok,
    Failed(String),
}

/// The clients; at most as many as the demo asks for at once.
pub struct Load {
    addr: SocketAddr,
    path: String,
    tally: Counter,
    /// Running clients, each with its stop flag.
    active: Vec<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// Clients told to stop, finishing their request in flight.
    retired: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn new(addr: SocketAddr, path: &str) -> Load {
        Load {
            addr,
            path: path.to_string(),
            tally: Arc::default(),
            active: Vec::new(),
            retired: Vec::new(),
        }
    }

    pub fn tally(&self) -> Tally {
        read(&self.tally)
    }

    pub fn counter(&self) -> Counter {
        self.tally.clone()
    }

    /// Starts or stops clients until `n` run; stopped ones finish the request they are in.
    pub fn set_clients(&mut self, n: usize) {
        while self.active.len() > n {
            if let Some((stop, handle)) = self.active.pop() {
                stop.store(true, Ordering::SeqCst);
                self.retired.push(handle);
            }
        }
        while self.active.len() < n {
            let stop = Arc::new(AtomicBool::new(false));
            let handle = tokio::spawn(client(
                self.addr,
                self.path.clone(),
                stop.clone(),
                self.tally.clone(),
            ));
            self.active.push((stop, handle));
        }
        self.retired.retain(|h| !h.is_finished());
    }

    /// Stops every client and waits (at most [`REQUEST_LIMIT`]) for their last answers.
    pub async fn stop_all(&mut self) {
        self.set_clients(0);
        let retired = std::mem::take(&mut self.retired);
        let _ = tokio::time::timeout(REQUEST_LIMIT, async {
            for h in retired {
                let _ = h.await;
            }
        })
        .await;
    }

    /// One GET of `path` on a fresh connection (the cold start), counted like the others.
    pub async fn single(&self, path: &str) -> (Outcome, Duration) {
        let started = Instant::now();
        let outcome = match connect(self.addr).await {
            Ok(mut sender) => get(&mut sender, self.addr, path).await,
            Err(e) => Outcome::Failed(e),
        };
        let took = started.elapsed();
        record(&self.tally, &outcome);
        (outcome, took)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for (_, h) in &self.active {
            h.abort();
        }
        for h in &self.retired {
            h.abort();
        }
    }
}

fn record(tally: &Mutex<Tally>, outcome: &Outcome) {
    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
    match outcome {
        Outcome::Ok => t.ok += 1,
        Outcome::Failed(reason) => t.fail(reason.clone()),
    }
}

/// One client: a kept-alive connection, requests back to back until told to stop.
async fn client(addr: SocketAddr, path: String, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    while !stop.load(Ordering::SeqCst) {
        let sender = match conn.as_mut() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => conn.insert(s),
                Err(reason) => {
                    record(&tally, &Outcome::Failed(reason));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // A connection the router closed while it was idle: nothing was sent, so nothing
        // failed; open another.
        if sender.ready().await.is_err() {
            conn = None;
            continue;
        }
        let outcome = get(sender, addr, &path).await;
        if matches!(outcome, Outcome::Failed(_)) {
            conn = None;
        }
        record(&tally, &outcome);
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = tokio::time::timeout(CONNECT_LIMIT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect: no connection within {CONNECT_LIMIT:?}"))?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One GET, the whole answer read, within [`REQUEST_LIMIT`].
async fn get(sender: &mut SendRequest<Empty<Bytes>>, addr: SocketAddr, path: &str) -> Outcome {
    let request = match hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::new())
    {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("request: {e}")),
    };
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?;
        Ok::<_, String>(status)
    };
    match tokio::time::timeout(REQUEST_LIMIT, exchange).await {
        Ok(Ok(status)) if status == hyper::StatusCode::OK => Outcome::Ok,
        Ok(Ok(status)) => Outcome::Failed(format!("HTTP {}", status.as_u16())),
        Ok(Err(reason)) => Outcome::Failed(reason),
        Err(_) => Outcome::Failed(format!("no answer within {}s", REQUEST_LIMIT.as_secs())),
    }
}
