//! Nodes the server has heard from, and when: liveness and usage live in memory (a heartbeat
//! every second must not write to disk), the node's description in the store.

use ebb_core::api::{InstanceUsage, NodeInfo, NodeUsage};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A node silent this long is down, unless `--node-down-after` says otherwise (ARCHITECTURE.md,
/// defaults: heartbeat 1 s, down after 3 s).
pub const NODE_DOWN_AFTER: Duration = Duration::from_secs(3);
/// The shortest down timeout allowed: two heartbeats, so that one late heartbeat never takes
/// a node for down.
pub const MIN_NODE_DOWN_AFTER: Duration = Duration::from_secs(2);
/// A node silent this long has missed a heartbeat (every second, ARCHITECTURE.md, defaults) and a half: suspect.
pub const NODE_SUSPECT_AFTER: Duration = Duration::from_millis(1500);

/// How often the control plane's async runtime, which serves heartbeats, shows that it runs:
/// see [`NodeRegistry::pulse`].
pub const PULSE_INTERVAL: Duration = Duration::from_millis(100);
/// A gap between pulses this long means the server could not process heartbeats (a SIGSTOP, a
/// paused VM, workers blocked on a frozen disk): five pulses missed, far beyond scheduling
/// jitter, yet well under the shortest down timeout ([`MIN_NODE_DOWN_AFTER`]).
pub const STALL_AFTER: Duration = Duration::from_millis(500);

/// What the server knows of one node.
struct Seen {
    info: NodeInfo,
    at: Instant,
    /// Its instances' usage from its last heartbeat, by instance id.
    usage: HashMap<String, InstanceUsage>,
    node_usage: Option<NodeUsage>,
    /// Reported down (an event) and not heard from since.
    down: bool,
}

/// Nodes heard from: their last heartbeat, usage and down state, in memory, and the down timeout.
pub struct NodeRegistry {
    seen: Mutex<HashMap<String, Seen>>,
    /// How long a node may be silent before it is down, in milliseconds.
    down_after_ms: AtomicU64,
    /// The last [`Self::pulse`] (None: no pulse runs, as in unit tests). Locked before `seen`.
    last_pulse: Mutex<Option<Instant>>,
    /// All the stall time discounted so far, in milliseconds: not counted in the server's
    /// uptime either, which decides when a node never heard from is down.
    stalled_ms: AtomicU64,
}

impl Default for NodeRegistry {
    fn default() -> Self {
        NodeRegistry {
            seen: Mutex::default(),
            down_after_ms: AtomicU64::new(NODE_DOWN_AFTER.as_millis() as u64),
            last_pulse: Mutex::default(),
            stalled_ms: AtomicU64::new(0),
        }
    }
}

impl NodeRegistry {
    /// Sets how long a node may be silent before it is down (at least [`MIN_NODE_DOWN_AFTER`]).
    pub fn set_down_after(&self, after: Duration) {
        let after = after.max(MIN_NODE_DOWN_AFTER);
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.down_after_ms.store(ms, Ordering::Relaxed);
    }

    /// How long a node may be silent before it is down.
    pub fn down_after(&self) -> Duration {
        Duration::from_millis(self.down_after_ms.load(Ordering::Relaxed))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Seen>> {
        crate::lock(&self.seen)
    }

    /// Called every [`PULSE_INTERVAL`] by a task on the runtime that serves heartbeats: proof
    /// that, until `now`, the server could have processed them.
    pub fn pulse(&self, now: Instant) {
        let mut last = crate::lock(&self.last_pulse);
        self.discount_stall(&mut last, now);
        *last = Some(now);
    }

    /// The node-down clock does not count time in which the server itself could not process
    /// heartbeats: when the last pulse is older than [`STALL_AFTER`], that whole gap is added
    /// to every node's last heartbeat (never past `now`). Checked by every liveness reading,
    /// so a reading taken right after a stall (before the pulse task has run again) or on
    /// another thread while the runtime is stuck sees it too.
    fn discount_stall(&self, last_pulse: &mut Option<Instant>, now: Instant) {
        let Some(last) = *last_pulse else { return };
        let gap = now.saturating_duration_since(last);
        if gap <= STALL_AFTER {
            return;
        }
        for node in self.lock().values_mut() {
            node.at = (node.at + gap).min(now);
        }
        *last_pulse = Some(now);
        let gap_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX);
        self.stalled_ms.fetch_add(gap_ms, Ordering::Relaxed);
    }

    /// [`Self::discount_stall`] before a liveness reading at `now`.
    fn settle(&self, now: Instant) {
        let mut last = crate::lock(&self.last_pulse);
        self.discount_stall(&mut last, now);
    }

    /// Records a heartbeat; returns whether the node is new or its description changed, and
    /// whether it returns from being reported down.
    pub fn heartbeat(&self, info: &NodeInfo, now: Instant) -> (bool, bool) {
        let mut seen = self.lock();
        match seen.get_mut(&info.name) {
            Some(node) => {
                let changed = node.info != *info;
                if changed {
                    node.info = info.clone();
                }
                node.at = now;
                (changed, std::mem::take(&mut node.down))
            }
            None => {
                let node = Seen {
                    info: info.clone(),
                    at: now,
                    usage: HashMap::new(),
                    node_usage: None,
                    down: false,
                };
                seen.insert(info.name.clone(), node);
                (true, false)
            }
        }
    }

    /// Another server heard from node `name` (its lease in etcd lives): as good as a heartbeat
    /// here. Returns false for a node this server has no description of yet.
    pub fn heard_elsewhere(&self, name: &str, now: Instant) -> bool {
        match self.lock().get_mut(name) {
            Some(node) => {
                node.at = node.at.max(now);
                true
            }
            None => false,
        }
    }

    /// Replaces what a node reported of its usage with its latest report: instances it no
    /// longer reports are dropped. Ignored for a node that never sent a heartbeat.
    pub fn record_usage(
        &self,
        node: &str,
        instances: Vec<InstanceUsage>,
        node_usage: Option<NodeUsage>,
    ) {
        if let Some(seen) = self.lock().get_mut(node) {
            seen.usage = instances.into_iter().map(|u| (u.id.clone(), u)).collect();
            seen.node_usage = node_usage;
        }
    }

    /// The latest usage of every instance on a live node, by instance id: what the autoscaler
    /// sums per service (e.g. `cpu_fraction`). Instances of silent nodes are left out.
    pub fn instance_usage(&self) -> HashMap<String, InstanceUsage> {
        self.instance_usage_at(Instant::now())
    }

    /// [`Self::instance_usage`] as of `now`.
    pub fn instance_usage_at(&self, now: Instant) -> HashMap<String, InstanceUsage> {
        let down_after = self.down_after();
        self.lock()
            .values()
            .filter(|node| is_live(node, now, down_after))
            .flat_map(|node| node.usage.values().cloned())
            .map(|u| (u.id.clone(), u))
            .collect()
    }

    /// The latest usage of each live node that reported one, by node name.
    pub fn node_usage(&self, now: Instant) -> HashMap<String, NodeUsage> {
        let down_after = self.down_after();
        self.lock()
            .iter()
            .filter(|(_, node)| is_live(node, now, down_after))
            .filter_map(|(name, node)| Some((name.clone(), node.node_usage.clone()?)))
            .collect()
    }

    /// Nodes silent past [`Self::down_after`] that were not reported down yet; they are
    /// reported now (once per outage).
    pub fn newly_down(&self, now: Instant) -> Vec<String> {
        self.settle(now);
        let down_after = self.down_after();
        let mut names: Vec<String> = self
            .lock()
            .iter_mut()
            .filter(|(_, node)| !node.down && !is_live(node, now, down_after))
            .map(|(name, node)| {
                node.down = true;
                name.clone()
            })
            .collect();
        names.sort();
        names
    }

    /// The address node `name` gave in its last heartbeat since this server started.
    pub fn address(&self, name: &str) -> Option<String> {
        self.lock().get(name).map(|node| node.info.address.clone())
    }

    /// Forgets a node's heartbeats and usage (`ebb nodes rm`).
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Every node's state and heartbeat age at `now`, the server having been up for `uptime`:
    /// one reading for a whole controller pass or listing.
    pub fn states(&self, now: Instant, uptime: Duration) -> NodeStates {
        self.settle(now);
        let ages = self
            .lock()
            .iter()
            .map(|(name, node)| (name.clone(), now.saturating_duration_since(node.at)))
            .collect();
        let stalled = Duration::from_millis(self.stalled_ms.load(Ordering::Relaxed));
        NodeStates::new(ages, uptime.saturating_sub(stalled), self.down_after())
    }

    /// The last usage the node reported of the whole machine, live or not.
    pub fn last_node_usage(&self, name: &str) -> Option<NodeUsage> {
        self.lock().get(name)?.node_usage.clone()
    }

    /// Names of nodes heard from within [`Self::down_after`], sorted.
    pub fn live(&self, now: Instant) -> Vec<String> {
        self.settle(now);
        let down_after = self.down_after();
        let mut names: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, node)| is_live(node, now, down_after))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// How resources are enforced on each live node, for `ebb status`.
    pub fn enforcement(&self) -> Option<String> {
        let mut all: Vec<String> = self
            .lock()
            .values()
            .map(|node| format!("{}: {}", node.info.name, node.info.enforcement))
            .collect();
        all.sort();
        (!all.is_empty()).then(|| all.join("; "))
    }
}

/// Nodes' heartbeat ages as read at one instant, and the states that follow from them.
#[derive(Debug, Clone)]
pub struct NodeStates {
    ages: HashMap<String, Duration>,
    uptime: Duration,
    down_after: Duration,
    /// Nodes in drain (from the store): draining unless down.
    draining: std::collections::BTreeSet<String>,
}

impl NodeStates {
    /// Heartbeat `ages` by node (a node missing: none since the server started), read when the
    /// server had been up for `uptime`; a node is down once silent for `down_after`.
    pub fn new(ages: HashMap<String, Duration>, uptime: Duration, down_after: Duration) -> Self {
        NodeStates {
            ages,
            uptime,
            down_after,
            draining: Default::default(),
        }
    }

    /// The same reading, with these nodes in drain.
    pub fn draining(mut self, nodes: impl IntoIterator<Item = String>) -> NodeStates {
        self.draining = nodes.into_iter().collect();
        self
    }

    /// Time since `node`'s last heartbeat; None if none since this server started.
    pub fn age(&self, node: &str) -> Option<Duration> {
        self.ages.get(node).copied()
    }

    /// `node`'s state, by [`state_of`]; a drained node that is not down is draining.
    pub fn get(&self, node: &str) -> ebb_core::api::NodeState {
        use ebb_core::api::NodeState;
        match state_of(self.age(node), self.uptime, self.down_after) {
            NodeState::Down => NodeState::Down,
            _ if self.draining.contains(node) => NodeState::Draining,
            state => state,
        }
    }
}

/// A node's state from the age of its last heartbeat (`None`: none since this server started,
/// which has been up for `uptime`). A node not heard from yet is suspect, not down, until the
/// server has waited as long as it would for any node: a restarted server replaces nothing
/// before its agents had the time to report. A node is down once silent for `down_after`, and
/// suspect from [`NODE_SUSPECT_AFTER`] (or half of `down_after`, if that is shorter).
pub fn state_of(
    age: Option<Duration>,
    uptime: Duration,
    down_after: Duration,
) -> ebb_core::api::NodeState {
    use ebb_core::api::NodeState;
    let suspect_after = NODE_SUSPECT_AFTER.min(down_after / 2);
    match age {
        Some(a) if a < suspect_after => NodeState::Ready,
        Some(a) if a < down_after => NodeState::Suspect,
        None if uptime < down_after => NodeState::Suspect,
        _ => NodeState::Down,
    }
}

fn is_live(node: &Seen, now: Instant, down_after: Duration) -> bool {
    now.saturating_duration_since(node.at) < down_after
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::api::SyncRequest;

    fn info(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            address: "127.0.0.1".into(),
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
            enforcement: "none: test".into(),
            labels: Default::default(),
        }
    }

    fn usage(id: &str, cpu_cores: f64) -> InstanceUsage {
        InstanceUsage {
            id: id.into(),
            generation: 1,
            cpu_cores,
            memory_bytes: 1 << 20,
            cpu_fraction: Some(cpu_cores / 0.5),
            memory_fraction: None,
            at_ms: 1,
        }
    }

    #[test]
    fn a_node_is_reported_down_once_per_outage() {
        let nodes = NodeRegistry::default();
        let t0 = Instant::now();
        nodes.heartbeat(&info("a"), t0);
        assert!(nodes.newly_down(t0 + Duration::from_secs(1)).is_empty());
        let late = t0 + NODE_DOWN_AFTER;
        assert_eq!(nodes.newly_down(late), vec!["a".to_string()]);
        assert!(nodes.newly_down(late).is_empty(), "once");
        assert_eq!(
            nodes.heartbeat(&info("a"), late),
            (false, true),
            "it returns"
        );
        assert_eq!(nodes.heartbeat(&info("a"), late), (false, false));
    }

    #[test]
    fn time_in_which_the_server_could_not_process_heartbeats_is_not_counted() {
        let reg = NodeRegistry::default();
        let t0 = Instant::now();
        reg.heartbeat(&info("a"), t0);
        reg.heartbeat(&info("b"), t0);
        reg.pulse(t0);
        // Pulses every 100 ms: the clock runs, and a silent node goes down as usual.
        for i in 1..=10 {
            reg.pulse(t0 + PULSE_INTERVAL * i);
        }
        reg.heartbeat(&info("b"), t0 + Duration::from_secs(1));
        // Then the server stops for 5 s (SIGSTOP): the first reading after it, taken before
        // the pulse task has run again, counts none of it.
        let resumed = t0 + Duration::from_secs(6);
        assert!(reg.newly_down(resumed).is_empty());
        assert_eq!(reg.live(resumed), vec!["a", "b"]);
        let states = reg.states(resumed, Duration::from_secs(60));
        assert_eq!(states.age("a"), Some(Duration::from_secs(1)));
        // Time after the stall counts again: a stays silent and goes down 3 s after its
        // heartbeat, stall excluded; b, heard later, a second after that.
        for i in 1..=21 {
            reg.pulse(resumed + PULSE_INTERVAL * i);
        }
        assert_eq!(
            reg.newly_down(resumed + Duration::from_millis(2100)),
            vec!["a"]
        );
        for i in 22..=31 {
            reg.pulse(resumed + PULSE_INTERVAL * i);
        }
        assert_eq!(
            reg.newly_down(resumed + Duration::from_millis(3100)),
            vec!["b"]
        );
    }

    #[test]
    fn a_stall_soon_after_start_does_not_count_against_nodes_not_heard_from_yet() {
        use ebb_core::api::NodeState;
        let reg = NodeRegistry::default();
        let t0 = Instant::now();
        for i in 0..=10 {
            reg.pulse(t0 + PULSE_INTERVAL * i);
        }
        // The server stops 1 s after its start, for 5 s; a node it knew from its store has
        // not reported yet. Without the stall, 6 s of uptime would make it down.
        let resumed = t0 + Duration::from_secs(6);
        let states = reg.states(resumed, Duration::from_secs(6));
        assert_eq!(states.get("known"), NodeState::Suspect);
        // Time after the stall counts again.
        for i in 1..=25 {
            reg.pulse(resumed + PULSE_INTERVAL * i);
        }
        let later = reg.states(
            resumed + Duration::from_millis(2500),
            Duration::from_millis(8500),
        );
        assert_eq!(later.get("known"), NodeState::Down);
    }

    #[test]
    fn a_stuck_runtime_stops_the_clock_for_readings_from_other_threads() {
        let reg = NodeRegistry::default();
        let t0 = Instant::now();
        reg.heartbeat(&info("a"), t0);
        reg.pulse(t0);
        // No pulse for 10 s (the API's workers are blocked on a frozen disk); the controller
        // reads every second from its own thread: the node never goes down.
        for s in 1..=10 {
            assert!(
                reg.newly_down(t0 + Duration::from_secs(s)).is_empty(),
                "{s} s"
            );
        }
        // Without a pulse task at all (None), nothing is discounted.
        let plain = NodeRegistry::default();
        plain.heartbeat(&info("a"), t0);
        assert_eq!(plain.newly_down(t0 + Duration::from_secs(5)), vec!["a"]);
    }

    #[test]
    fn state_follows_the_heartbeat_age() {
        use ebb_core::api::NodeState;
        let s = Duration::from_millis;
        let up = Duration::from_secs(60);
        let down = NODE_DOWN_AFTER;
        assert_eq!(state_of(Some(s(900)), up, down), NodeState::Ready);
        assert_eq!(state_of(Some(s(1600)), up, down), NodeState::Suspect);
        assert_eq!(state_of(Some(s(3000)), up, down), NodeState::Down);
        assert_eq!(state_of(None, up, down), NodeState::Down);
        assert_eq!(
            state_of(None, s(500), down),
            NodeState::Suspect,
            "just restarted"
        );
        // A longer timeout keeps the same suspicion point; a shorter one suspects at half.
        assert_eq!(state_of(Some(s(9000)), up, s(10_000)), NodeState::Suspect);
        assert_eq!(state_of(Some(s(1200)), up, s(2000)), NodeState::Suspect);
        assert_eq!(state_of(Some(s(900)), up, s(2000)), NodeState::Ready);
    }

    #[test]
    fn the_down_timeout_is_configurable_but_not_below_two_heartbeats() {
        let nodes = NodeRegistry::default();
        let t0 = Instant::now();
        nodes.set_down_after(Duration::from_secs(10));
        nodes.heartbeat(&info("a"), t0);
        assert!(nodes.newly_down(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(nodes.newly_down(t0 + Duration::from_secs(10)), ["a"]);
        nodes.set_down_after(Duration::from_millis(100));
        assert_eq!(nodes.down_after(), MIN_NODE_DOWN_AFTER);
    }

    #[test]
    fn the_latest_report_replaces_a_nodes_usage() {
        let nodes = NodeRegistry::default();
        let t0 = Instant::now();
        assert!(nodes.heartbeat(&info("a"), t0).0);
        assert!(
            !nodes.heartbeat(&info("a"), t0).0,
            "same description: no store write"
        );
        nodes.record_usage("a", vec![usage("web-1", 0.25), usage("web-2", 0.1)], None);
        nodes.record_usage("a", vec![usage("web-1", 0.4)], None);
        let now = nodes.instance_usage_at(t0);
        assert_eq!(now.len(), 1, "web-2 was not reported again: {now:?}");
        assert_eq!(now["web-1"].cpu_cores, 0.4);
        assert_eq!(now["web-1"].cpu_fraction, Some(0.8));
    }

    #[test]
    fn usage_of_a_silent_node_is_left_out() {
        let nodes = NodeRegistry::default();
        let t0 = Instant::now();
        nodes.heartbeat(&info("a"), t0);
        nodes.heartbeat(&info("b"), t0 + NODE_DOWN_AFTER);
        nodes.record_usage("a", vec![usage("web-1", 0.2)], None);
        let node_b = NodeUsage {
            cpu_cores: 1.5,
            memory_bytes: 5,
            at_ms: 1,
        };
        nodes.record_usage("b", vec![usage("web-2", 0.3)], Some(node_b.clone()));
        nodes.record_usage("never-seen", vec![usage("web-3", 0.3)], None);
        let at = t0 + NODE_DOWN_AFTER;
        let ids: Vec<String> = nodes.instance_usage_at(at).into_keys().collect();
        assert_eq!(ids, ["web-2"]);
        assert_eq!(nodes.node_usage(at), HashMap::from([("b".into(), node_b)]));
        assert_eq!(nodes.live(at), ["b"]);
        assert_eq!(nodes.instance_usage_at(t0).len(), 2, "both live at t0");
    }

    #[test]
    fn a_heartbeat_without_usage_still_parses() {
        let body = r#"{"node":{"name":"a","address":"127.0.0.1","cpu_millis":1000,
            "memory_bytes":1,"enforcement":"none"},"statuses":[],"events":[]}"#;
        let req: SyncRequest = serde_json::from_str(body).unwrap();
        assert!(req.usage.is_empty() && req.node_usage.is_none());
        let with = SyncRequest {
            usage: vec![usage("web-1", 0.5)],
            ..req
        };
        let back: SyncRequest =
            serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back.usage, with.usage);
    }
}
