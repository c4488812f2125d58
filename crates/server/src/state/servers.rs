//! The control plane's servers as this server has seen them in etcd's registry, so that
//! `ebb servers` can show a server that left, and when it was last seen, after its session
//! (and with it its registry entry) is gone. Kept in memory on every server, read from the
//! registry every [`REGISTRY_EVERY`]: no store write, and the server that becomes leader
//! already knows the one it replaced.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{lock, now_ms, run_loop, Identity, Server};

/// How often every server reads the registry: a server that left is shown within a second.
pub const REGISTRY_EVERY: Duration = Duration::from_secs(1);

/// How long a server that left is still listed: a day, long enough to notice a machine that
/// went away overnight.
pub const DEPARTED_KEPT: Duration = Duration::from_secs(24 * 3600);

/// At most this many departed servers are remembered (the oldest go first).
pub const MAX_DEPARTED: usize = 64;

/// A server this one saw in the registry, and when it last did.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its registry record.
    pub identity: Identity,
    /// When it was last in the registry, unix milliseconds.
    pub last_seen_ms: u64,
}

/// Servers seen in the registry, by name.
#[derive(Debug, Default)]
pub struct ServerRegistry {
    seen: Mutex<HashMap<String, Seen>>,
    /// The names in the registry at the last look.
    live: Mutex<Vec<String>>,
}

impl ServerRegistry {
    /// Notes the servers in the registry at `now_ms`; the others keep their last sighting,
    /// until [`DEPARTED_KEPT`] has passed or [`MAX_DEPARTED`] newer departures push them out.
    pub fn observe(&self, live: Vec<Identity>, now_ms: u64) {
        *lock(&self.live) = live.iter().map(|s| s.name.clone()).collect();
        let mut seen = lock(&self.seen);
        for identity in live {
            let name = identity.name.clone();
            seen.insert(
                name,
                Seen {
                    identity,
                    last_seen_ms: now_ms,
                },
            );
        }
        let kept = u64::try_from(DEPARTED_KEPT.as_millis()).unwrap_or(u64::MAX);
        seen.retain(|_, s| now_ms.saturating_sub(s.last_seen_ms) <= kept);
        let mut departed: Vec<(u64, String)> = seen
            .iter()
            .filter(|(_, s)| s.last_seen_ms < now_ms)
            .map(|(name, s)| (s.last_seen_ms, name.clone()))
            .collect();
        if departed.len() > MAX_DEPARTED {
            departed.sort();
            for (_, name) in &departed[..departed.len() - MAX_DEPARTED] {
                seen.remove(name);
            }
        }
    }

    /// The servers in the registry at the last look (every [`REGISTRY_EVERY`]).
    pub fn live(&self) -> Vec<String> {
        lock(&self.live).clone()
    }

    /// Servers seen before that are not in `live` (names), with their last sighting.
    pub fn departed(&self, live: &[String]) -> Vec<Seen> {
        lock(&self.seen)
            .iter()
            .filter(|(name, _)| !live.contains(name))
            .map(|(_, s)| s.clone())
            .collect()
    }
}

/// Reads the registry every [`REGISTRY_EVERY`] until `stop`; does nothing on a server alone.
pub async fn follow(server: Server, stop: CancellationToken) {
    if server.cluster().is_none() {
        return;
    }
    let mut tick = tokio::time::interval(REGISTRY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while run_loop::next(&stop, tick.tick()).await.is_some() {
        let pass = server.clone();
        run_loop::blocking_pass("reading the servers' registry", move || {
            let live = registered(&pass)?;
            pass.registry().observe(live, now_ms());
            Ok::<(), ebb_store::StoreError>(())
        })
        .await;
    }
}

/// The servers whose session lives, from etcd's registry (each entry's name is its key's).
pub fn registered(server: &Server) -> Result<Vec<Identity>, ebb_store::StoreError> {
    let Some(cluster) = server.cluster() else {
        return Ok(server.identity().cloned().into_iter().collect());
    };
    Ok(cluster
        .servers()?
        .into_iter()
        .filter_map(|(name, record)| {
            let record: Identity = serde_json::from_slice(&record).ok()?;
            Some(Identity { name, ..record })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> Identity {
        Identity {
            name: name.into(),
            api: format!("{name}:7070"),
            router: "0.0.0.0".into(),
        }
    }

    #[test]
    fn a_server_that_left_keeps_its_last_sighting_until_it_returns_or_a_day_passes() {
        let r = ServerRegistry::default();
        r.observe(vec![id("s1"), id("s2")], 1_000);
        r.observe(vec![id("s1"), id("s2")], 2_000);
        r.observe(vec![id("s2")], 3_000);
        let gone = r.departed(&["s2".into()]);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].identity.name, "s1");
        assert_eq!(gone[0].last_seen_ms, 2_000);
        r.observe(vec![id("s1"), id("s2")], 4_000);
        assert!(r.departed(&["s1".into(), "s2".into()]).is_empty());
        let day = DEPARTED_KEPT.as_millis() as u64;
        r.observe(vec![id("s2")], 5_000);
        r.observe(vec![id("s2")], 4_000 + day);
        assert_eq!(r.departed(&["s2".into()]).len(), 1, "a day, not more");
        r.observe(vec![id("s2")], 4_001 + day);
        assert!(r.departed(&["s2".into()]).is_empty());
    }

    #[test]
    fn only_so_many_departed_servers_are_remembered_the_newest_first() {
        let r = ServerRegistry::default();
        for i in 0..(MAX_DEPARTED as u64 + 10) {
            r.observe(vec![id(&format!("gone-{i}"))], 1_000 + i);
        }
        r.observe(vec![id("s1")], 100_000);
        let gone = r.departed(&["s1".into()]);
        assert_eq!(gone.len(), MAX_DEPARTED);
        assert!(
            gone.iter().all(|s| s.identity.name != "gone-0"),
            "the oldest went"
        );
    }
}
