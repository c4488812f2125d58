//! JSON helpers: round trips, and undecodable data reported as corruption naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::collections::BTreeMap;

use common::temp_store;
use ebb_store::{Expect, KvStore, KvStoreJsonExt, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Service {
    name: String,
    replicas: u32,
}

fn web(replicas: u32) -> Service {
    Service {
        name: "web".into(),
        replicas,
    }
}

#[test]
fn json_values_round_trip_with_their_revision() {
    let (_dir, store) = temp_store();
    let rev = store
        .put_json("services/web", &web(2), Expect::Absent)
        .unwrap();
    assert_eq!(
        store.get_json::<Service>("services/web").unwrap(),
        Some((web(2), rev))
    );
    assert_eq!(store.get_json::<Service>("services/none").unwrap(), None);

    // The revision from get_json is what a compare-and-swap update needs.
    let next = store
        .put_json("services/web", &web(3), Expect::ModRevision(rev))
        .unwrap();
    assert!(matches!(
        store.put_json("services/web", &web(9), Expect::ModRevision(rev)),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get_json::<Service>("services/web").unwrap(),
        Some((web(3), next))
    );
}

#[test]
fn list_json_decodes_every_value_under_the_prefix() {
    let (_dir, store) = temp_store();
    let a = store.put_json("services/a", &web(1), Expect::Any).unwrap();
    let b = store.put_json("services/b", &web(2), Expect::Any).unwrap();
    store
        .put_json("nodes/n1", &"not a service", Expect::Any)
        .unwrap();

    let (items, revision) = store.list_json::<Service>("services/").unwrap();
    assert_eq!(
        items,
        vec![
            ("services/a".to_string(), web(1), a),
            ("services/b".to_string(), web(2), b)
        ]
    );
    assert_eq!(revision, store.revision().unwrap());
}

#[test]
fn an_undecodable_value_is_corrupt_and_names_the_key() {
    let (_dir, store) = temp_store();
    store
        .put("services/bad", b"{ not json", Expect::Any)
        .unwrap();
    for err in [
        store.get_json::<Service>("services/bad").unwrap_err(),
        store.list_json::<Service>("services/").unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(err.to_string().contains("services/bad"), "{err}");
    }
}

#[test]
fn works_through_a_trait_object() {
    let (_dir, store) = temp_store();
    let store: &dyn KvStore = &store;
    let rev = store.put_json("k", &web(1), Expect::Any).unwrap();
    assert_eq!(store.get_json::<Service>("k").unwrap(), Some((web(1), rev)));
}

#[test]
fn an_unencodable_value_is_an_encode_error_and_writes_nothing() {
    let (_dir, store) = temp_store();
    let tuple_keys: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
    let err = store.put_json("k", &tuple_keys, Expect::Any).unwrap_err();
    assert!(
        matches!(&err, StoreError::Encode { key, .. } if key == "k"),
        "{err:?}"
    );
    assert_eq!(store.revision().unwrap(), 0);
}
