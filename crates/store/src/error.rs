//! Errors of the store. Conflicts and compaction are expected outcomes that callers handle
//! (retry with a fresh read, re-list); the rest are faults to report.

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A compare-and-swap condition did not hold; nothing was written. Read the key again,
    /// decide again, and retry.
    #[error(
        "conflict on key `{key}`: expected {expected}, but it is {}; \
         nothing was written — read it again and retry",
        describe_actual(.actual)
    )]
    Conflict {
        /// The key whose condition failed.
        key: String,
        /// The condition, e.g. `absent` or `mod_revision 7`.
        expected: String,
        /// The key's current mod revision, `None` if it has no live value.
        actual: Option<u64>,
    },

    /// The requested history was compacted away.
    #[error(
        "revision {requested} is compacted (history kept after revision {compacted}); \
         list the keys again and watch from the revision that returns"
    )]
    Compacted {
        /// The `after` revision the caller asked for.
        requested: u64,
        /// The store's compacted revision.
        compacted: u64,
    },

    /// A transaction names one key twice. etcd refuses that ("duplicate key given in txn
    /// request"), so no backend accepts it: a plan writes each key once.
    #[error("transaction names key `{key}` twice; write each key once per transaction")]
    DuplicateKey {
        /// The key named twice.
        key: String,
    },

    /// The store could not be reached: no etcd member answered in time. A write's outcome is
    /// then unknown (a member may have applied it before its answer was lost): conditional
    /// writes are safe to try again, and a retry finds a conflict if the first one landed.
    #[error("the store ({store}) is unreachable: {message}")]
    Unavailable {
        /// Which store, e.g. `etcd at 10.0.0.1:2379,10.0.0.2:2379`.
        store: String,
        /// The last member's failure.
        message: String,
    },

    /// A write of a leader that is no longer the leader: the transaction also checked the
    /// leader key's revision (fencing), and that key has changed, so nothing was written.
    #[error("not written: this server no longer leads (leader key `{key}` changed)")]
    Fenced {
        /// The leader key the write was fenced on.
        key: String,
    },

    /// etcd answered with an error of its own (a refused request, an internal error).
    #[error("etcd: {0}")]
    Etcd(String),

    /// The store's configuration is wrong (an address that does not parse, no member given).
    #[error("store configuration: {0}")]
    Config(String),

    /// SQLite failed (I/O, locking, full disk, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// The store's files could not be created or made private.
    #[error("store file: {0}")]
    Io(#[from] std::io::Error),

    /// Stored data is not what it should be (bad schema version, undecodable value, ...).
    #[error("corrupt store data: {0}")]
    Corrupt(String),

    /// A value could not be encoded for storage (e.g. JSON of a map with non-string keys).
    #[error("cannot encode value for key `{key}`: {message}")]
    Encode {
        /// The key being written.
        key: String,
        /// What the encoder said.
        message: String,
    },
}

fn describe_actual(actual: &Option<u64>) -> String {
    match actual {
        Some(rev) => format!("mod_revision {rev}"),
        None => "absent".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_message_names_key_expected_and_actual() {
        let err = StoreError::Conflict {
            key: "services/web".into(),
            expected: "mod_revision 3".into(),
            actual: Some(5),
        };
        let msg = err.to_string();
        assert!(msg.contains("`services/web`"), "{msg}");
        assert!(msg.contains("expected mod_revision 3"), "{msg}");
        assert!(msg.contains("it is mod_revision 5"), "{msg}");

        let absent = StoreError::Conflict {
            key: "k".into(),
            expected: "mod_revision 3".into(),
            actual: None,
        };
        assert!(absent.to_string().contains("it is absent"));
    }
}
