//! The node's own credential: what the server returned when this node first joined with the
//! join token. Kept in the data dir (0600) so that a restarted agent never needs the join token
//! again, and used as the bearer token of every call about this node.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use ebb_core::api::NODE_CREDENTIAL_FILE;

/// Where the credential is kept: [`NODE_CREDENTIAL_FILE`] in the data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(NODE_CREDENTIAL_FILE)
}

/// The stored credential, if this node has joined from this data dir before.
pub fn load(data_dir: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path(data_dir)) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores `credential` (mode 0600 from the first byte), replacing any older one atomically: a
/// crash mid-write leaves the old file or the new one, never half of one.
pub fn save(data_dir: &Path, credential: &str) -> io::Result<()> {
    let tmp = data_dir.join(format!("{NODE_CREDENTIAL_FILE}.tmp"));
    ebb_core::files::write_synced(&tmp, credential.as_bytes(), ebb_core::files::PRIVATE)?;
    fs::rename(&tmp, path(data_dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_credential_is_kept_0600_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        save(dir.path(), "first").unwrap();
        save(dir.path(), "second").unwrap();
        assert_eq!(load(dir.path()).unwrap().as_deref(), Some("second"));
        let mode = fs::metadata(path(dir.path())).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
