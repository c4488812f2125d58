//! A small ext4 file system on a loop device (root only), mounted where a test puts a data
//! dir, so that the test can freeze its disk (`fsfreeze`) as a stalled or snapshotting disk
//! would be.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopFs {
    mount: PathBuf,
}

/// Size of the image: the store and logs of a short test fit many times over.
const IMAGE_SIZE: &str = "64M";

fn run(program: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e} (util-linux and e2fsprogs are needed)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl LoopFs {
    /// Makes `image` an ext4 file system and mounts it (loop) on `mount`, created if missing.
    pub fn mount(image: &Path, mount: &Path) -> LoopFs {
        run(
            "truncate",
            &["-s".as_ref(), IMAGE_SIZE.as_ref(), image.as_os_str()],
        );
        run(
            "mkfs.ext4",
            &["-q".as_ref(), "-F".as_ref(), image.as_os_str()],
        );
        std::fs::create_dir_all(mount).expect("mount point");
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                mount.as_os_str(),
            ],
        );
        LoopFs {
            mount: mount.to_path_buf(),
        }
    }

    /// Freezes the file system: every write to it blocks until the returned guard is dropped.
    pub fn freeze(&self) -> Frozen<'_> {
        run("fsfreeze", &["-f".as_ref(), self.mount.as_os_str()]);
        Frozen(self)
    }
}

/// A frozen [`LoopFs`]; thawed when dropped (also when a test fails mid-freeze).
pub struct Frozen<'a>(&'a LoopFs);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.0.mount)
            .status();
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Thawing a file system that is not frozen fails: quietly, since Frozen may have.
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.mount)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = std::fs::remove_dir(&self.mount);
    }
}
