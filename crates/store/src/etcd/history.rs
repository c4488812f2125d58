//! The recent changes one etcd store has watched, for [`crate::KvStore::changes_since`].
//!
//! etcd keeps its history itself, but reads it only through a watch, a stream. The store keeps
//! one watch on its namespace open for its whole life and appends every change here, so that a
//! `changes_since` is a lookup in memory, as cheap as on SQLite. The buffer is bounded: the
//! oldest revisions leave first, whole, and a reader asking for history before what is kept
//! gets [`StoreError::Compacted`] and lists again, exactly as after a compaction.

use std::collections::VecDeque;

use crate::{StoreError, WatchEvent};

/// How many changes one store keeps in memory for `changes_since`. A controller pass reads the
/// changes of the last second or so; 50,000 changes is many minutes of a busy cluster.
pub const HISTORY_EVENTS: usize = 50_000;

/// How many bytes of keys and values those changes may take together.
pub const HISTORY_BYTES: usize = 64 << 20;

/// The watched changes of one namespace, oldest first.
#[derive(Debug)]
pub(crate) struct History {
    events: VecDeque<WatchEvent>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
    /// Changes at or below this revision may be missing: `after` below it is refused.
    floor: u64,
    /// Every change up to this revision has been appended.
    watched: u64,
}

impl History {
    /// An empty history that starts after `revision` (the store's revision when the watch began).
    pub(crate) fn starting_at(revision: u64, max_events: usize, max_bytes: usize) -> History {
        History {
            events: VecDeque::new(),
            bytes: 0,
            max_events: max_events.max(1),
            max_bytes,
            floor: revision,
            watched: revision,
        }
    }

    /// Every change up to this revision is known.
    pub(crate) fn watched(&self) -> u64 {
        self.watched
    }

    /// Appends the changes of one watch response and notes that everything up to `revision`
    /// (its header's) has been seen. Changes at or below what is already known are ignored, so a
    /// watch that resumed a little early does not repeat them.
    pub(crate) fn append(&mut self, changes: Vec<WatchEvent>, revision: u64) {
        // One response carries every change of a revision, so the changes of one transaction
        // share a revision and all come in; only those known before this response are skipped.
        let known = self.watched;
        for change in changes {
            if change.revision() <= known {
                continue;
            }
            self.watched = change.revision();
            self.bytes += size(&change);
            self.events.push_back(change);
        }
        self.watched = self.watched.max(revision);
        self.evict();
    }

    /// etcd compacted its history at `revision`: nothing older can be read any more.
    pub(crate) fn compacted(&mut self, revision: u64) {
        self.floor = self.floor.max(revision);
        self.watched = self.watched.max(revision);
    }

    /// This store compacted etcd at `revision`: readers from before it are refused, as they
    /// are by SQLite, though the changes may still be here.
    pub(crate) fn forget_before(&mut self, revision: u64) {
        self.floor = self.floor.max(revision);
    }

    /// Changes under `prefix` after `after`, in revision order: at most `limit`, except that the
    /// changes of one revision (one transaction) are never split between two reads.
    pub(crate) fn read(
        &self,
        prefix: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<WatchEvent>, StoreError> {
        if after < self.floor {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: self.floor,
            });
        }
        let start = self.events.partition_point(|e| e.revision() <= after);
        let mut out: Vec<WatchEvent> = Vec::new();
        for change in self.events.range(start..) {
            if !change.key().starts_with(prefix) {
                continue;
            }
            let full = out.len() >= limit.max(1);
            if full && out.last().map(WatchEvent::revision) != Some(change.revision()) {
                break;
            }
            out.push(change.clone());
        }
        Ok(out)
    }

    /// Drops the oldest revisions, whole, while over either bound.
    fn evict(&mut self) {
        while self.events.len() > self.max_events || self.bytes > self.max_bytes {
            let Some(oldest) = self.events.front().map(WatchEvent::revision) else {
                break;
            };
            while self.events.front().map(WatchEvent::revision) == Some(oldest) {
                if let Some(gone) = self.events.pop_front() {
                    self.bytes -= size(&gone);
                }
            }
            self.floor = self.floor.max(oldest);
        }
    }
}

/// Roughly what a change holds in memory.
fn size(change: &WatchEvent) -> usize {
    match change {
        WatchEvent::Put(kv) => kv.key.len() + kv.value.len() + 64,
        WatchEvent::Delete { key, .. } => key.len() + 32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyValue;

    fn put(key: &str, rev: u64) -> WatchEvent {
        WatchEvent::Put(KeyValue {
            key: key.into(),
            value: b"v".to_vec(),
            create_revision: rev,
            mod_revision: rev,
        })
    }

    #[test]
    fn reads_after_a_revision_under_a_prefix() {
        let mut h = History::starting_at(10, 100, 1 << 20);
        h.append(vec![put("a/1", 11), put("b/1", 12), put("a/2", 13)], 13);
        let got = h.read("a/", 11, 10).unwrap();
        assert_eq!(got, vec![put("a/2", 13)]);
        assert_eq!(h.read("", 10, 10).unwrap().len(), 3);
        assert_eq!(h.watched(), 13);
    }

    #[test]
    fn never_splits_one_revision_between_reads() {
        let mut h = History::starting_at(0, 100, 1 << 20);
        h.append(vec![put("a", 1), put("b", 2), put("c", 2), put("d", 3)], 3);
        let got = h.read("", 0, 2).unwrap();
        assert_eq!(got.len(), 3, "both changes of revision 2: {got:?}");
        assert_eq!(h.read("", 2, 2).unwrap(), vec![put("d", 3)]);
    }

    #[test]
    fn history_before_the_start_or_a_compaction_is_refused() {
        let mut h = History::starting_at(10, 100, 1 << 20);
        assert!(matches!(
            h.read("", 9, 10),
            Err(StoreError::Compacted {
                requested: 9,
                compacted: 10
            })
        ));
        h.compacted(20);
        assert!(h.read("", 19, 10).is_err());
        assert!(h.read("", 20, 10).unwrap().is_empty());
    }

    #[test]
    fn evicts_whole_revisions_and_raises_the_floor() {
        let mut h = History::starting_at(0, 3, 1 << 20);
        h.append(vec![put("a", 1), put("b", 2), put("c", 2), put("d", 3)], 3);
        // Four changes over a bound of three: revision 1 goes.
        assert!(h.read("", 0, 10).is_err());
        assert_eq!(h.read("", 1, 10).unwrap().len(), 3);
        h.append(vec![put("e", 4)], 4);
        // Revision 2 (two changes) goes whole.
        assert!(h.read("", 1, 10).is_err());
        assert_eq!(h.read("", 2, 10).unwrap(), vec![put("d", 3), put("e", 4)]);
    }

    #[test]
    fn a_resumed_watch_repeats_nothing() {
        let mut h = History::starting_at(0, 100, 1 << 20);
        h.append(vec![put("a", 1), put("b", 2)], 2);
        h.append(vec![put("b", 2), put("c", 3), put("d", 3)], 3);
        assert_eq!(h.read("", 0, 10).unwrap().len(), 4);
    }
}
