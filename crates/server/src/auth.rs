//! The API token: generated on first start, kept with mode 0600 in the data dir, compared in
//! constant time.

use ebb_core::files::{write_synced, PRIVATE};
use rand::RngCore;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

pub use ebb_core::api::TOKEN_FILE;
/// File in the data dir that holds the token agents join with (`ebb agent --token-file`).
pub const JOIN_TOKEN_FILE: &str = "join-token";
/// Bytes of randomness in a token (256 bits, like a GitHub token's entropy).
const TOKEN_BYTES: usize = 32;

/// Where the API token is kept: [`TOKEN_FILE`] in the data dir.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Reads the API token, creating it (mode 0600) on first start; tightens loose permissions.
pub fn load_or_create_token(data_dir: &Path) -> io::Result<String> {
    load_or_create(&token_path(data_dir))
}

/// Reads the join token's secret, creating it as the API token is created. A separate secret,
/// so that a machine that joins as a node cannot deploy, scale or read the cluster's services.
/// The file may also carry the API's CA hash ([`ebb_core::api::JoinToken`]).
pub fn load_or_create_join_token(data_dir: &Path) -> io::Result<String> {
    let text = load_or_create(&data_dir.join(JOIN_TOKEN_FILE))?;
    Ok(ebb_core::api::JoinToken::parse(&text).secret)
}

/// Writes the join token as operators copy it (mode 0600), if it changed.
pub fn write_join_token(data_dir: &Path, token: &ebb_core::api::JoinToken) -> io::Result<()> {
    let path = data_dir.join(JOIN_TOKEN_FILE);
    let text = token.render();
    if fs::read_to_string(&path).is_ok_and(|old| old.trim() == text) {
        return Ok(());
    }
    write_synced(&path, text.as_bytes(), PRIVATE)
}

fn load_or_create(path: &Path) -> io::Result<String> {
    let path = path.to_path_buf();
    match fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            let mode = fs::metadata(&path)?.permissions().mode() & 0o777;
            if mode != 0o600 {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            }
            return Ok(text.trim().to_string());
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = random_token();
    write_synced(&path, token.as_bytes(), PRIVATE)?;
    Ok(token)
}

/// Where servers sharing an etcd keep the API and join tokens (under ebb's namespace).
pub const SHARED_TOKENS_KEY: &str = "control/tokens";

/// The tokens every server of the control plane uses, as the store keeps them.
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedTokens {
    token: String,
    join_token: String,
}

/// The tokens of the servers sharing `store`: the first server to start puts its own (`token`,
/// `join_token`); the others take them. Each writes them to its data dir (mode 0600), so the
/// CLI and agents pointed at any server use the same. Returns (API token, join token).
pub fn share_tokens(
    store: &dyn ebb_store::KvStore,
    data_dir: &Path,
    token: String,
    join_token: String,
) -> Result<(String, String), ebb_store::StoreError> {
    use ebb_store::KvStoreJsonExt;
    let shared =
        store.get_or_create_json(SHARED_TOKENS_KEY, || Ok(SharedTokens { token, join_token }))?;
    write_synced(&token_path(data_dir), shared.token.as_bytes(), PRIVATE)?;
    let join = ebb_core::api::JoinToken {
        secret: shared.join_token.clone(),
        ..ebb_core::api::JoinToken::parse(&shared.join_token)
    };
    write_join_token(data_dir, &join)?;
    Ok((shared.token, shared.join_token))
}

/// A new secret: `TOKEN_BYTES` (32) random bytes in hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the store keeps for the name of a node whose agent runs inside the control plane (the
/// local node of `ebb up`): no credential matches it, so the join token cannot claim that name.
pub const RESERVED_CREDENTIAL: &[u8] = b"reserved: the control plane's own node";

/// Reserves node `name` for the control plane's own agent (see [`RESERVED_CREDENTIAL`]).
pub fn reserve_node_name(
    store: &dyn ebb_store::KvStore,
    name: &str,
) -> Result<(), ebb_store::StoreError> {
    let key = crate::state::keys::node_credential(name);
    store.put(&key, RESERVED_CREDENTIAL, ebb_store::Expect::Any)?;
    Ok(())
}

/// What the store keeps of a node credential: its SHA-256 in hex. A copy of the store (a
/// backup, an etcd snapshot) then lets no one act as a node; 256 random bits need no salt.
pub fn credential_hash(credential: &str) -> String {
    ebb_core::hash::sha256_hex(credential.as_bytes())
}

/// Checks an `Authorization` header value against a stored [`credential_hash`], in constant time.
pub fn credential_matches(header: Option<&str>, stored_hash: &str) -> bool {
    let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    credential_hash(presented.trim())
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// Checks an `Authorization` header value against the token in constant time.
pub fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    presented.trim().as_bytes().ct_eq(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_hashes_are_read_once_and_forgotten_when_any_credential_changes() {
        use crate::state::keys;
        use ebb_store::{Expect, KvStore, SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let cache = CredentialCache::new(&store);
        assert_eq!(cache.hash(&store, "n1").unwrap(), None, "not joined");
        store
            .put(&keys::node_credential("n1"), b"h1", Expect::Any)
            .unwrap();
        assert_eq!(
            cache.hash(&store, "n1").unwrap().as_deref(),
            Some("h1"),
            "a miss is not kept"
        );
        // Unrelated writes keep what is known; a changed credential is read again.
        store.put("services/web", b"{}", Expect::Any).unwrap();
        assert_eq!(cache.hash(&store, "n1").unwrap().as_deref(), Some("h1"));
        store
            .put(&keys::node_credential("n1"), b"h2", Expect::Any)
            .unwrap();
        assert_eq!(cache.hash(&store, "n1").unwrap().as_deref(), Some("h2"));
        store
            .delete(&keys::node_credential("n1"), Expect::Any)
            .unwrap();
        assert_eq!(
            cache.hash(&store, "n1").unwrap(),
            None,
            "a removed node's credential"
        );
    }

    #[test]
    fn token_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_token(dir.path()).unwrap();
        let b = load_or_create_token(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        let mode = fs::metadata(token_path(dir.path()))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        assert!(authorized(Some("Bearer abc"), "abc"));
        assert!(!authorized(Some("Bearer abd"), "abc"));
        assert!(!authorized(Some("abc"), "abc"));
        assert!(!authorized(Some("Bearer "), "abc"));
        assert!(!authorized(None, "abc"));
    }

    #[test]
    fn a_credential_matches_its_hash_only() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        let stored = credential_hash(&a);
        assert_ne!(stored, a, "the store never holds the credential itself");
        assert!(credential_matches(Some(&format!("Bearer {a}")), &stored));
        assert!(!credential_matches(Some(&format!("Bearer {b}")), &stored));
        assert!(!credential_matches(Some(&a), &stored));
        assert!(!credential_matches(None, &stored));
    }
}

/// The nodes' credential hashes as last read from the store, so that an agent's heartbeat
/// does not read its credential from the store every second (on etcd, one request per
/// heartbeat: 1,000 a second for 1,000 nodes). Only hashes that exist are kept, and all are
/// dropped as soon as any credential changes (a join, a node removed), which the store's change
/// log tells without a read on etcd.
#[derive(Debug)]
pub struct CredentialCache {
    revisions: tokio::sync::watch::Receiver<u64>,
    known: std::sync::Mutex<(u64, std::collections::HashMap<String, String>)>,
}

/// Credential hashes kept at most, a bound on memory whatever names callers try (only names
/// that exist are kept, so this is the number of nodes a cluster may have before some
/// heartbeats read the store again).
pub const MAX_CACHED_CREDENTIALS: usize = 100_000;

impl CredentialCache {
    /// An empty cache following `store`'s revisions.
    pub fn new(store: &dyn ebb_store::KvStore) -> CredentialCache {
        let revisions = store.subscribe();
        let at = *revisions.borrow();
        CredentialCache {
            revisions,
            known: std::sync::Mutex::new((at, std::collections::HashMap::new())),
        }
    }

    /// Node `name`'s credential hash: from memory while no credential changed, else from
    /// `store`. None if the node has not joined.
    pub fn hash(
        &self,
        store: &dyn ebb_store::KvStore,
        name: &str,
    ) -> Result<Option<String>, ebb_store::StoreError> {
        use crate::state::keys;
        let latest = *self.revisions.borrow();
        let checked = crate::lock(&self.known).0;
        if checked < latest {
            // Asked without the lock: on etcd it may wait for the watch, and other heartbeats
            // must not queue behind it.
            let changed = match store.changes_since(keys::NODE_CREDENTIALS, checked, 1) {
                Ok(changes) => !changes.is_empty(),
                Err(ebb_store::StoreError::Compacted { .. }) => true,
                Err(e) => return Err(e),
            };
            let mut known = crate::lock(&self.known);
            if changed {
                known.1.clear();
                known.0 = known.0.max(latest);
            } else if known.0 == checked {
                known.0 = latest;
            }
        }
        if let Some(hash) = crate::lock(&self.known).1.get(name) {
            return Ok(Some(hash.clone()));
        }
        let Some(kv) = store.get(&keys::node_credential(name))? else {
            return Ok(None);
        };
        let Ok(hash) = String::from_utf8(kv.value) else {
            return Ok(None);
        };
        let mut known = crate::lock(&self.known);
        // Kept only if no credential changed since `latest` was taken: a change the check
        // above has not seen yet would otherwise be hidden until the next one.
        if known.0 == latest && known.1.len() < MAX_CACHED_CREDENTIALS {
            known.1.insert(name.to_string(), hash.clone());
        }
        Ok(Some(hash))
    }
}
