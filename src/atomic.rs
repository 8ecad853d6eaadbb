//! Whole-file writes that survive a crash: the one way mayu replaces a file (machine files, the
//! dnsmasq hosts and config files, API tokens, the machine key, boot programs). The bytes go to
//! a temp file in the same folder (`.NAME.tmp.PID.N`, created exclusively, with the final mode
//! set explicitly so no umask widens or narrows it), are synced, renamed over the destination,
//! and the folder is synced: after a crash the destination holds its old or its new content,
//! whole. Groups of files share one sync ([`write_group`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file written next to its destination but not yet in place. Dropping it without
/// [`Staged::commit`] removes the temp file and leaves the destination as it was.
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

/// Writes `bytes` to a temp file beside `dest` with permissions `mode` and syncs it to disk.
pub fn stage(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<Staged> {
    let staged = stage_unsynced(dest, bytes, mode)?;
    File::open(&staged.tmp)?.sync_all()?;
    Ok(staged)
}

/// [`stage`] without the sync: the caller makes a whole group durable at once.
fn stage_unsynced(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<Staged> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)
    })();
    if let Err(e) = written {
        // A full disk or a failed write leaves no temp file behind.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(Staged {
        tmp,
        dest: dest.to_path_buf(),
        done: false,
    })
}

impl Staged {
    /// Renames the temp file over the destination and syncs the folder, so after a crash the
    /// destination holds either the old or the new content, whole.
    pub fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.tmp, &self.dest)?;
        self.done = true;
        sync_dir(self.dest.parent().unwrap_or(Path::new(".")))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Groups at least this big are made durable with one `syncfs` instead of a sync per file.
const SYNCFS_FROM: usize = 4;

/// Writes (`Some`) or removes (`None`) several files of one folder as a group: every temp file
/// is written, all of them are made durable together (one `syncfs` for a big group), then each
/// is renamed into place and the folder is synced once. After a crash each file holds its old
/// or its new content, whole. On an error nothing has been renamed unless the error came from
/// the rename or folder sync itself.
pub fn write_group(dir: &Path, files: &[(PathBuf, Option<&[u8]>)], mode: u32) -> io::Result<()> {
    let mut staged = Vec::with_capacity(files.len());
    for (dest, bytes) in files {
        if let Some(bytes) = bytes {
            staged.push(stage_unsynced(dest, bytes, mode)?);
        }
    }
    if staged.len() >= SYNCFS_FROM {
        syncfs(dir)?;
    } else {
        for s in &staged {
            File::open(&s.tmp)?.sync_all()?;
        }
    }
    for s in &mut staged {
        fs::rename(&s.tmp, &s.dest)?;
        s.done = true;
    }
    for (dest, bytes) in files {
        if bytes.is_none() {
            match fs::remove_file(dest) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    sync_dir(dir)
}

/// Flushes every dirty page of the filesystem holding `dir` (Linux reports write-back errors).
pub fn syncfs(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(dir)?;
    // SAFETY: syncfs(2) on a descriptor we own and keep open for the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dest` with `bytes` (permissions `mode`), crash-safe.
pub fn write(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    stage(dest, bytes, mode)?.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(".tmp."))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_mode_asked_for_is_the_mode_written_and_no_temp_file_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let public = dir.path().join("hosts");
        let private = dir.path().join("tokens");
        write(&public, b"a\n", 0o644).expect("write");
        write(&private, b"b\n", 0o600).expect("write");
        // Replacing keeps the mode asked for, not the old file's.
        write(&public, b"c\n", 0o640).expect("rewrite");
        assert_eq!(mode(&public), 0o640);
        assert_eq!(mode(&private), 0o600);
        assert_eq!(fs::read(&public).expect("read"), b"c\n");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_group_ends_with_every_file_as_asked_and_a_failed_one_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        fs::write(&b, "old").expect("seed");
        let group: Vec<(PathBuf, Option<&[u8]>)> = (0..5)
            .map(|i| (dir.path().join(format!("m{i}.json")), Some(&b"x"[..])))
            .chain([(a.clone(), Some(&b"new"[..])), (b.clone(), None)])
            .collect();
        write_group(dir.path(), &group, 0o600).expect("group");
        assert_eq!(fs::read(&a).expect("a"), b"new");
        assert!(!b.exists(), "removed in the group");
        assert_eq!(mode(&dir.path().join("m4.json")), 0o600);
        // A destination in a folder that does not exist: the error, and nothing left behind.
        let bad = [(dir.path().join("missing/x.json"), Some(&b"x"[..]))];
        assert!(write_group(dir.path(), &bad, 0o600).is_err());
        assert!(leftovers(dir.path()).is_empty());
    }
}
