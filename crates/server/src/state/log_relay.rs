//! The server's side of the agents' log channel (`ebb_agent::log_channel`): `ebb logs` asks
//! here, an agent's open long-poll carries the read to the node, and the agent posts the lines
//! back. Everything lives in memory and is bounded: a few reads waiting per node, a deadline on
//! each, and a read nobody waits for any more (its caller went away) is dropped.

use ebb_core::api::{LogRead, LogRequest, LogsResponse};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// How long a reader waits for an agent's answer: reading a few files takes milliseconds, so
/// an agent this late is stuck or cut off, and `ebb logs` says so instead of hanging.
pub const LOG_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// A node whose agent has had no poll open for this long keeps no channel with this server
/// (agents poll again at once, so a live channel is never closed for more than a round trip).
pub const CHANNEL_GONE_AFTER: Duration = Duration::from_secs(5);
/// Most reads waiting for one node; more are refused at once (a busy reader cannot pile
/// requests up in the server's memory).
pub const MAX_WAITING_PER_NODE: usize = 64;
/// Most reads handed to an agent in one poll answer.
pub const MAX_REQUESTS_PER_POLL: usize = 16;
/// Most answers one node may be posting at once: each may be tens of MiB while it is read,
/// so one node's agent cannot hold much of the server's memory.
pub const MAX_ANSWERS_PER_NODE: usize = 4;

/// Why a log read through the channel failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayError {
    /// The node's agent has no poll open with this server.
    NoChannel,
    /// Too many reads already wait for this node.
    Busy,
    /// The agent took the read but did not answer within [`LOG_ANSWER_TIMEOUT`].
    NoAnswer,
}

/// Why an agent's answer is not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// Nobody waits for this read of this node (late, answered already, or another node's).
    NotWaiting,
    /// The node is posting [`MAX_ANSWERS_PER_NODE`] answers already.
    Busy,
}

/// The reads waiting for each node, and the agents' open polls.
#[derive(Default)]
pub struct LogRelay {
    nodes: Mutex<HashMap<String, Channel>>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Channel {
    /// Reads not yet handed to the agent.
    queued: VecDeque<LogRequest>,
    /// Readers waiting for an answer, by read id (queued or handed out).
    waiting: HashMap<u64, oneshot::Sender<LogsResponse>>,
    /// Polls open now.
    polls: usize,
    /// When the last poll ended.
    last_poll_end: Option<Instant>,
    /// Answers being posted now.
    answering: usize,
    wake: Arc<Notify>,
}

impl Channel {
    fn connected(&self, now: Instant) -> bool {
        self.polls > 0
            || self
                .last_poll_end
                .is_some_and(|t| now.saturating_duration_since(t) < CHANNEL_GONE_AFTER)
    }

    /// Nothing waits on it and no agent polls: it can be forgotten.
    fn idle(&self, now: Instant) -> bool {
        !self.connected(now)
            && self.queued.is_empty()
            && self.waiting.is_empty()
            && self.answering == 0
    }

    fn take_queued(&mut self) -> Vec<LogRequest> {
        let n = self.queued.len().min(MAX_REQUESTS_PER_POLL);
        self.queued.drain(..n).collect()
    }
}

impl LogRelay {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `node`'s agent keeps a log channel with this server now.
    pub fn connected(&self, node: &str, now: Instant) -> bool {
        self.lock().get(node).is_some_and(|c| c.connected(now))
    }

    /// Nodes whose agents keep a channel with this server now, sorted. Forgets the channels
    /// of agents gone (a node removed, renamed), so the map holds only live ones.
    pub fn connected_nodes(&self, now: Instant) -> Vec<String> {
        let mut nodes = self.lock();
        nodes.retain(|_, c| !c.idle(now));
        let mut names: Vec<String> = nodes
            .iter()
            .filter(|(_, c)| c.connected(now))
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Asks `node`'s agent to read `read` and waits for its answer.
    pub async fn read(&self, node: &str, read: LogRead) -> Result<LogsResponse, RelayError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        {
            let mut nodes = self.lock();
            let channel = nodes
                .get_mut(node)
                .filter(|c| c.connected(Instant::now()))
                .ok_or(RelayError::NoChannel)?;
            if channel.waiting.len() >= MAX_WAITING_PER_NODE {
                return Err(RelayError::Busy);
            }
            channel.queued.push_back(LogRequest { id, read });
            channel.waiting.insert(id, tx);
            channel.wake.notify_waiters();
        }
        // Whatever ends this wait (an answer, the deadline, the caller going away), the read
        // is forgotten.
        let _forget = Forget {
            relay: self,
            node,
            id,
        };
        match tokio::time::timeout(LOG_ANSWER_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => Err(RelayError::NoAnswer),
        }
    }

    /// An agent's poll: the reads waiting for `node`, as soon as there is one, or none after
    /// `wait`.
    pub async fn poll(&self, node: &str, wait: Duration) -> Vec<LogRequest> {
        let deadline = tokio::time::Instant::now() + wait;
        let _open = OpenPoll::new(self, node);
        loop {
            let wake = {
                let mut nodes = self.lock();
                let channel = nodes.entry(node.to_string()).or_default();
                if !channel.queued.is_empty() {
                    return channel.take_queued();
                }
                channel.wake.clone()
            };
            let notified = wake.notified();
            tokio::pin!(notified);
            // Registered before the second look, so a read queued in between still wakes it.
            notified.as_mut().enable();
            {
                let mut nodes = self.lock();
                if let Some(channel) = nodes.get_mut(node) {
                    if !channel.queued.is_empty() {
                        return channel.take_queued();
                    }
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// Takes read `id` of `node` for the answer about to be posted, before its body is read:
    /// an answer nobody waits for is refused unread, and one read takes one answer.
    pub fn claim(&self, node: &str, id: u64) -> Result<Claim<'_>, ClaimError> {
        let mut nodes = self.lock();
        let channel = nodes.get_mut(node).ok_or(ClaimError::NotWaiting)?;
        if !channel.waiting.contains_key(&id) {
            return Err(ClaimError::NotWaiting);
        }
        if channel.answering >= MAX_ANSWERS_PER_NODE {
            return Err(ClaimError::Busy);
        }
        let sender = channel.waiting.remove(&id);
        channel.answering += 1;
        Ok(Claim {
            relay: self,
            node: node.to_string(),
            sender,
        })
    }

    /// An agent's answer to read `id`, all at once; false if nobody waits for it.
    pub fn answer(&self, node: &str, id: u64, answer: LogsResponse) -> bool {
        self.claim(node, id).is_ok_and(|c| c.deliver(answer))
    }
}

/// A read taken by an answer being posted; counted against its node until dropped.
pub struct Claim<'a> {
    relay: &'a LogRelay,
    node: String,
    sender: Option<oneshot::Sender<LogsResponse>>,
}

impl Claim<'_> {
    /// Hands the answer to its reader; false if the reader went away meanwhile.
    pub fn deliver(mut self, answer: LogsResponse) -> bool {
        self.sender.take().is_some_and(|tx| tx.send(answer).is_ok())
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(channel) = self.relay.lock().get_mut(&self.node) {
            channel.answering = channel.answering.saturating_sub(1);
        }
    }
}

/// Drops a read from its node's channel when its reader stops waiting.
struct Forget<'a> {
    relay: &'a LogRelay,
    node: &'a str,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(channel) = self.relay.lock().get_mut(self.node) {
            channel.waiting.remove(&self.id);
            channel.queued.retain(|r| r.id != self.id);
        }
    }
}

/// Counts a poll as open while it lasts.
struct OpenPoll<'a> {
    relay: &'a LogRelay,
    node: String,
}

impl<'a> OpenPoll<'a> {
    fn new(relay: &'a LogRelay, node: &str) -> Self {
        relay.lock().entry(node.to_string()).or_default().polls += 1;
        OpenPoll {
            relay,
            node: node.to_string(),
        }
    }
}

impl Drop for OpenPoll<'_> {
    fn drop(&mut self) {
        if let Some(channel) = self.relay.lock().get_mut(&self.node) {
            channel.polls = channel.polls.saturating_sub(1);
            channel.last_poll_end = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::api::LogLine;
    use ebb_testkit::eventually;

    fn read_of(id: &str) -> LogRead {
        LogRead {
            instances: vec![id.to_string()],
            tail: 10,
            ..Default::default()
        }
    }

    fn line(text: &str) -> LogsResponse {
        LogsResponse {
            lines: vec![LogLine {
                instance: "a".into(),
                line: text.into(),
                at_ms: None,
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_read_reaches_the_polling_agent_and_its_answer_the_reader() {
        let relay = Arc::new(LogRelay::default());
        let agent = {
            let relay = relay.clone();
            tokio::spawn(async move {
                let requests = relay.poll("n1", Duration::from_secs(5)).await;
                assert_eq!(requests.len(), 1);
                assert_eq!(requests[0].read, read_of("a"));
                assert!(!relay.answer("n2", requests[0].id, line("wrong node")));
                assert!(relay.answer("n1", requests[0].id, line("hello")));
            })
        };
        // The poll is open once the agent task runs.
        eventually("the agent's poll", Duration::from_secs(5), || {
            relay.connected("n1", Instant::now()).then_some(())
        })
        .await;
        let answer = relay.read("n1", read_of("a")).await.unwrap();
        assert_eq!(answer.lines[0].line, "hello");
        agent.await.unwrap();
        assert!(relay.lock()["n1"].waiting.is_empty());
    }

    #[tokio::test]
    async fn an_answer_is_taken_once_and_a_node_posts_a_bounded_number_at_once() {
        let relay = Arc::new(LogRelay::default());
        relay.lock().entry("n1".into()).or_default().polls = 1;
        let mut readers = Vec::new();
        for _ in 0..MAX_ANSWERS_PER_NODE + 1 {
            let relay = relay.clone();
            readers.push(tokio::spawn(
                async move { relay.read("n1", read_of("a")).await },
            ));
        }
        eventually("every read queued", Duration::from_secs(5), || {
            (relay.lock()["n1"].waiting.len() == MAX_ANSWERS_PER_NODE + 1).then_some(())
        })
        .await;
        let ids: Vec<u64> = relay.lock()["n1"].waiting.keys().copied().collect();
        let claims: Vec<Claim<'_>> = ids[..MAX_ANSWERS_PER_NODE]
            .iter()
            .map(|id| relay.claim("n1", *id).unwrap())
            .collect();
        assert_eq!(
            relay.claim("n1", ids[0]).err(),
            Some(ClaimError::NotWaiting),
            "one read, one answer"
        );
        assert_eq!(
            relay.claim("n2", ids[MAX_ANSWERS_PER_NODE]).err(),
            Some(ClaimError::NotWaiting),
            "not another node's"
        );
        assert_eq!(
            relay.claim("n1", ids[MAX_ANSWERS_PER_NODE]).err(),
            Some(ClaimError::Busy)
        );
        for claim in claims {
            assert!(claim.deliver(line("hello")));
        }
        assert!(relay.answer("n1", ids[MAX_ANSWERS_PER_NODE], line("last")));
        for r in readers {
            assert!(r.await.unwrap().is_ok());
        }
        assert_eq!(relay.lock()["n1"].answering, 0);
    }

    #[tokio::test]
    async fn a_node_without_a_poll_has_no_channel() {
        let relay = LogRelay::default();
        assert_eq!(
            relay.read("n1", read_of("a")).await.unwrap_err(),
            RelayError::NoChannel
        );
        // A poll that ended long ago is no channel either.
        relay.lock().entry("n1".into()).or_default().last_poll_end =
            Some(Instant::now() - CHANNEL_GONE_AFTER - Duration::from_secs(1));
        assert!(!relay.connected("n1", Instant::now()));
        assert!(relay.connected_nodes(Instant::now()).is_empty());
        assert!(
            relay.lock().is_empty(),
            "a gone agent's channel is forgotten"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_that_never_answers_times_out_and_the_read_is_forgotten() {
        let relay = LogRelay::default();
        relay.lock().entry("n1".into()).or_default().polls = 1;
        assert_eq!(
            relay.read("n1", read_of("a")).await.unwrap_err(),
            RelayError::NoAnswer
        );
        let nodes = relay.lock();
        assert!(nodes["n1"].waiting.is_empty() && nodes["n1"].queued.is_empty());
    }

    #[tokio::test]
    async fn reads_waiting_for_one_node_are_bounded() {
        let relay = Arc::new(LogRelay::default());
        relay.lock().entry("n1".into()).or_default().polls = 1;
        let mut readers = Vec::new();
        for _ in 0..MAX_WAITING_PER_NODE {
            let relay = relay.clone();
            readers.push(tokio::spawn(
                async move { relay.read("n1", read_of("a")).await },
            ));
        }
        eventually("every read queued", Duration::from_secs(5), || {
            (relay.lock()["n1"].waiting.len() == MAX_WAITING_PER_NODE).then_some(())
        })
        .await;
        assert_eq!(
            relay.read("n1", read_of("a")).await.unwrap_err(),
            RelayError::Busy
        );
        // One poll hands out a bounded batch.
        assert_eq!(
            relay.poll("n1", Duration::from_millis(10)).await.len(),
            MAX_REQUESTS_PER_POLL
        );
        for r in readers {
            r.abort();
        }
    }
}
