//! One writer per inventory folder: an exclusive `flock` on `.mayu.lock`, held for the life of
//! the process and released by the kernel when it dies (so a crash never leaves it stale). The
//! file names the holder's pid, so a second mayu can say who is in the way.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = ".mayu.lock";
/// How long a busy lock is retried before the folder is reported busy.
const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "inventory {} is in use by {holder}; only one mayu may write an inventory folder (stop it, or give this one its own `inventory:`)",
        .dir.display()
    )]
    Busy { dir: PathBuf, holder: String },
    #[error("cannot lock inventory {}: {source}", .dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Held while it lives.
#[derive(Debug)]
pub struct InventoryLock {
    _file: File,
}

impl InventoryLock {
    pub fn acquire(dir: &Path) -> Result<InventoryLock, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // A holder that is just exiting (a restart), or a child process between fork and exec
        // that briefly shares the lock's descriptor, lets go within moments: wait a little
        // before calling the folder busy.
        let deadline = std::time::Instant::now() + GRACE;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Busy {
                        dir: dir.to_path_buf(),
                        holder: holder(&path),
                    })
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(InventoryLock { _file: file })
    }
}

/// "process 1234 (mayu)" from the pid the holder wrote.
fn holder(path: &Path) -> String {
    let pid = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    match pid {
        Some(pid) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| format!(" ({})", c.trim()))
                .unwrap_or_default();
            format!("process {pid}{comm}")
        }
        None => "another process".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_dropped_one_frees_the_folder() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = InventoryLock::acquire(dir.path()).expect("first");
        let err = InventoryLock::acquire(dir.path()).expect_err("second");
        let text = err.to_string();
        assert!(
            text.contains(&format!("process {}", std::process::id())),
            "{text}"
        );
        drop(first);
        InventoryLock::acquire(dir.path()).expect("free again");
    }
}
