//! Serde types stored as JSON, so callers work with their own structs, not bytes.
//!
//! JSON because it is what the API speaks and what a person can read with the sqlite3 shell
//! or etcdctl when debugging. A value that does not decode is reported as
//! [`StoreError::Corrupt`] naming the key, never a panic.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Expect, KeyValue, KvStore, StoreError};

impl KeyValue {
    /// Decode the value as JSON.
    pub fn decode_json<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_slice(&self.value).map_err(|err| {
            StoreError::Corrupt(format!(
                "value of key `{}` (mod_revision {}) is not a valid {}: {err}",
                self.key,
                self.mod_revision,
                std::any::type_name::<T>()
            ))
        })
    }
}

/// JSON helpers for every [`KvStore`], including `dyn KvStore`.
pub trait KvStoreJsonExt: KvStore {
    /// The value of `key` decoded from JSON, with its mod revision (for [`Expect::ModRevision`]).
    fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, u64)>, StoreError> {
        match self.get(key)? {
            Some(kv) => Ok(Some((kv.decode_json()?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// Every key under `prefix` as `(key, value, mod_revision)`, sorted by key, and the store
    /// revision they were read at. One undecodable value fails the whole list.
    #[allow(clippy::type_complexity)]
    fn list_json<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<(Vec<(String, T, u64)>, u64), StoreError> {
        let (kvs, revision) = self.list(prefix)?;
        let items = kvs
            .into_iter()
            .map(|kv| {
                let value = kv.decode_json()?;
                Ok((kv.key, value, kv.mod_revision))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((items, revision))
    }

    /// Store `value` as JSON under `key` if `expect` holds; returns the new revision.
    fn put_json<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|err| StoreError::Encode {
            key: key.to_string(),
            message: err.to_string(),
        })?;
        self.put(key, &bytes, expect)
    }

    /// The value of `key`, or, if it has none, `make()`'s, stored create-only. Several writers
    /// racing to create it all get the one that landed first (what servers sharing a store do
    /// with its first server's tokens and CA).
    fn get_or_create_json<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Some((value, _)) = self.get_json(key)? {
            return Ok(value);
        }
        let mine = make()?;
        match self.put_json(key, &mine, Expect::Absent) {
            Ok(_) => Ok(mine),
            Err(StoreError::Conflict { .. }) => self
                .get_json(key)?
                .map(|(value, _)| value)
                .ok_or_else(|| StoreError::Corrupt(format!("`{key}` vanished once created"))),
            Err(other) => Err(other),
        }
    }
}

impl<S: KvStore + ?Sized> KvStoreJsonExt for S {}
