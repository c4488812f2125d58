//! Writing the small files that hold secrets and identities (tokens, credentials, keys) the one
//! way: created with their mode from the first byte (never readable by others, even briefly),
//! and synced before anyone relies on them.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode of files only their owner may read: tokens, credentials, private keys.
pub const PRIVATE: u32 = 0o600;

/// Mode of directories only their owner may enter: the data dir and what ebb keeps in it.
pub const PRIVATE_DIR: u32 = 0o700;

/// Creates `dir` and its missing parents, each private to the owner from the start
/// ([`PRIVATE_DIR`]); an existing one is left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
}

/// Writes `bytes` to `path` (created with `mode`, or truncated) and syncs it to disk.
pub fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_file_is_private_and_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("ebb-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        write_synced(&path, b"a long first secret", PRIVATE).unwrap();
        write_synced(&path, b"second", PRIVATE).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let inner = dir.join("a/b");
        create_private_dir(&inner).unwrap();
        let mode = std::fs::metadata(&inner).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
