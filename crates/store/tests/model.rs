//! Property test: any sequence of puts and deletes, conditional or not, leaves the store
//! equal to a BTreeMap model, with strictly increasing revisions, and the change log
//! replays to the same state.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::collections::BTreeMap;

use common::{reopen, temp_store};
use ebb_store::{Expect, KvStore, StoreError, WatchEvent};
use proptest::prelude::*;

const KEYS: &[&str] = &["a", "a/1", "a/2", "ab", "b/1", "b/2/x", "é", ""];
const PREFIXES: &[&str] = &["", "a", "a/", "b/", "é", "z"];

#[derive(Debug, Clone)]
enum Cond {
    Any,
    Absent,
    /// The key's current mod revision (or a made-up one if absent).
    Current,
    /// A revision the key does not have.
    Stale,
}

#[derive(Debug, Clone)]
enum ModelOp {
    Put {
        key: usize,
        value: Vec<u8>,
        cond: Cond,
    },
    Delete {
        key: usize,
        cond: Cond,
    },
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        Just(Cond::Any),
        Just(Cond::Absent),
        Just(Cond::Current),
        Just(Cond::Stale)
    ]
}

fn model_op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        3 => (0..KEYS.len(), prop::collection::vec(any::<u8>(), 0..8), cond())
            .prop_map(|(key, value, cond)| ModelOp::Put { key, value, cond }),
        1 => (0..KEYS.len(), cond()).prop_map(|(key, cond)| ModelOp::Delete { key, cond }),
    ]
}

/// key -> (value, mod_revision)
type Model = BTreeMap<String, (Vec<u8>, u64)>;

fn expect_for(cond: &Cond, current: Option<u64>) -> Expect {
    match cond {
        Cond::Any => Expect::Any,
        Cond::Absent => Expect::Absent,
        Cond::Current => Expect::ModRevision(current.unwrap_or(1)),
        Cond::Stale => Expect::ModRevision(current.map_or(1, |rev| rev + 1)),
    }
}

fn holds(expect: Expect, current: Option<u64>) -> bool {
    match expect {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::ModRevision(rev) => current == Some(rev),
    }
}

fn assert_matches_model(store: &dyn KvStore, model: &Model) -> Result<(), TestCaseError> {
    for prefix in PREFIXES {
        let (kvs, _) = store.list(prefix).unwrap();
        let got: Vec<(String, Vec<u8>, u64)> = kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.mod_revision))
            .collect();
        let want: Vec<(String, Vec<u8>, u64)> = model
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, (value, rev))| (key.clone(), value.clone(), *rev))
            .collect();
        prop_assert_eq!(got, want, "prefix {:?}", prefix);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_store_behaves_like_a_map_with_increasing_revisions(
        ops in prop::collection::vec(model_op(), 1..40)
    ) {
        let (dir, store) = temp_store();
        let mut model = Model::new();
        let mut last = store.revision().unwrap();

        for op in &ops {
            let (key, result, would_hold) = match op {
                ModelOp::Put { key, value, cond } => {
                    let key = KEYS[*key];
                    let current = model.get(key).map(|(_, rev)| *rev);
                    let expect = expect_for(cond, current);
                    let result = store.put(key, value, expect).map(Some);
                    if let Ok(Some(rev)) = &result {
                        model.insert(key.to_string(), (value.clone(), *rev));
                    }
                    (key, result, holds(expect, current))
                }
                ModelOp::Delete { key, cond } => {
                    let key = KEYS[*key];
                    let current = model.get(key).map(|(_, rev)| *rev);
                    let expect = expect_for(cond, current);
                    let result = store.delete(key, expect);
                    prop_assert_eq!(
                        matches!(result, Ok(None)),
                        current.is_none() && holds(expect, current),
                        "delete of {:?} reported the wrong outcome: {:?}", key, result
                    );
                    if matches!(result, Ok(Some(_))) {
                        model.remove(key);
                    }
                    (key, result, holds(expect, current))
                }
            };
            match result {
                Ok(Some(rev)) => {
                    prop_assert!(would_hold, "write to {:?} succeeded against its condition", key);
                    prop_assert!(rev > last, "revision {} after {}", rev, last);
                    last = rev;
                }
                Ok(None) => prop_assert!(would_hold),
                Err(StoreError::Conflict { .. }) => prop_assert!(!would_hold, "spurious conflict on {:?}", key),
                Err(other) => prop_assert!(false, "unexpected error {}", other),
            }
            prop_assert_eq!(store.revision().unwrap(), last);
        }
        assert_matches_model(&store, &model)?;

        // Replaying the change log from the start rebuilds the same map.
        let mut replayed = Model::new();
        for event in store.changes_since("", 0, usize::MAX).unwrap() {
            match event {
                WatchEvent::Put(kv) => { replayed.insert(kv.key, (kv.value, kv.mod_revision)); }
                WatchEvent::Delete { key, .. } => { replayed.remove(&key); }
            }
        }
        prop_assert_eq!(&replayed, &model);

        // Compaction and a restart change nothing visible.
        store.compact(last).unwrap();
        drop(store);
        let store = reopen(&dir);
        prop_assert_eq!(store.revision().unwrap(), last);
        assert_matches_model(&store, &model)?;
    }
}
