//! The audit repository's health at open: HEAD, its tree and every blob it names are read and
//! checked by our own code (zlib + SHA-1 of loose objects) before libgit2 touches them. A loose
//! object cut short by a power loss made libgit2's inflate spin for ever; here it is a clear
//! error that names the object and what to do. Also: git lock files that no live process holds
//! (left by a crash) are removed.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::ZlibDecoder;
use git2::{Oid, Repository};
use sha1::{Digest, Sha1};

#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error(
        "audit repository {} is damaged: {kind} {oid} ({path}) {why}. mayu will not write to it. \
         To recover, move it aside (mv {git} {git}.damaged) and start mayu again: it starts a new \
         history from the machine files; the old one stays readable in {git}.damaged",
        .dir.display(), git = .git.display()
    )]
    Damaged {
        dir: PathBuf,
        git: PathBuf,
        kind: &'static str,
        oid: Oid,
        path: String,
        why: String,
    },
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

/// What the check read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub objects: usize,
}

/// Checks the commit HEAD points to, its tree and everything in it. A repository without a
/// HEAD commit (new, empty) passes.
pub fn verify_head(repo: &Repository) -> Result<Checked, Box<IntegrityError>> {
    let Some(head) = repo.head().ok().and_then(|h| h.target()) else {
        return Ok(Checked::default());
    };
    let git = repo.path().to_path_buf();
    let dir = repo.workdir().unwrap_or(repo.path()).to_path_buf();
    let damaged = |kind, oid, path: &str, why: String| {
        Box::new(IntegrityError::Damaged {
            dir: dir.clone(),
            git: git.trim_end_matches_slash(),
            kind,
            oid,
            path: path.to_string(),
            why,
        })
    };
    let mut checked = Checked::default();
    let commit = read(repo, head, "commit").map_err(|why| damaged("commit", head, "HEAD", why))?;
    checked.objects += 1;
    let tree = std::str::from_utf8(&commit)
        .ok()
        .and_then(|c| c.lines().next())
        .and_then(|l| l.strip_prefix("tree "))
        .and_then(|h| Oid::from_str(h.trim()).ok())
        .ok_or_else(|| damaged("commit", head, "HEAD", "names no tree".into()))?;
    let mut trees = vec![(tree, String::from("/"))];
    while let Some((oid, path)) = trees.pop() {
        let bytes = read(repo, oid, "tree").map_err(|why| damaged("tree", oid, &path, why))?;
        checked.objects += 1;
        for (mode, name, child) in
            entries(&bytes).map_err(|why| damaged("tree", oid, &path, why))?
        {
            let child_path = format!("{}{name}", if path == "/" { "" } else { &path });
            match mode.as_str() {
                "40000" => trees.push((child, format!("{child_path}/"))),
                // a submodule's commit lives in another repository
                "160000" => {}
                _ => {
                    read(repo, child, "blob")
                        .map_err(|why| damaged("blob", child, &child_path, why))?;
                    checked.objects += 1;
                }
            }
        }
    }
    Ok(checked)
}

trait TrimSlash {
    fn trim_end_matches_slash(&self) -> PathBuf;
}

impl TrimSlash for PathBuf {
    fn trim_end_matches_slash(&self) -> PathBuf {
        PathBuf::from(self.to_string_lossy().trim_end_matches('/'))
    }
}

/// An object's content, checked: from its loose file by our own decoder, or (when it is only
/// in a pack, which git writes with checksums) through libgit2.
fn read(repo: &Repository, oid: Oid, kind: &str) -> Result<Vec<u8>, String> {
    let hex = oid.to_string();
    let loose = repo.path().join("objects").join(&hex[..2]).join(&hex[2..]);
    let compressed = match std::fs::read(&loose) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let odb = repo.odb().map_err(|e| e.to_string())?;
            if !odb.exists(oid) {
                return Err("is missing".into());
            }
            let obj = odb.read(oid).map_err(|e| e.to_string())?;
            return Ok(obj.data().to_vec());
        }
        Err(e) => return Err(format!("cannot be read: {e}")),
    };
    let mut raw = Vec::new();
    ZlibDecoder::new(compressed.as_slice())
        .read_to_end(&mut raw)
        .map_err(|e| format!("is truncated or corrupt ({e})"))?;
    let nul = raw
        .iter()
        .position(|b| *b == 0)
        .ok_or("has no object header")?;
    let header = std::str::from_utf8(&raw[..nul]).map_err(|_| "has a broken header")?;
    let (got_kind, size) = header.split_once(' ').ok_or("has a broken header")?;
    if got_kind != kind {
        return Err(format!("is a {got_kind}, expected a {kind}"));
    }
    let body = &raw[nul + 1..];
    if size.parse::<usize>().ok() != Some(body.len()) {
        return Err(format!("is truncated ({} of {size} bytes)", body.len()));
    }
    let digest = Sha1::digest(&raw);
    if digest.as_slice() != oid.as_bytes() {
        return Err("does not match its hash".into());
    }
    Ok(body.to_vec())
}

/// A tree's entries: (mode, name, oid).
fn entries(mut bytes: &[u8]) -> Result<Vec<(String, String, Oid)>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let sp = bytes
            .iter()
            .position(|b| *b == b' ')
            .ok_or("has a broken entry")?;
        let nul = bytes
            .iter()
            .position(|b| *b == 0)
            .ok_or("has a broken entry")?;
        if nul < sp || bytes.len() < nul + 21 {
            return Err("has a broken entry".into());
        }
        let mode = String::from_utf8_lossy(&bytes[..sp]).into_owned();
        let name = String::from_utf8_lossy(&bytes[sp + 1..nul]).into_owned();
        let oid = Oid::from_bytes(&bytes[nul + 1..nul + 21]).map_err(|e| e.to_string())?;
        out.push((mode, name, oid));
        bytes = &bytes[nul + 21..];
    }
    Ok(out)
}

/// Lock files git leaves while it writes; a crash can leave them behind.
fn lock_files(git: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["index.lock", "HEAD.lock", "packed-refs.lock", "config.lock"]
        .iter()
        .map(|f| git.join(f))
        .collect();
    let mut dirs = vec![git.join("refs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "lock") {
                out.push(p);
            }
        }
    }
    out.retain(|p| p.exists());
    out
}

/// Whether any live process has `path` open (git holds its lock files open while it writes).
fn held_open(path: &Path) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true; // cannot tell: leave it
    };
    for p in procs.flatten() {
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t == path) {
                return true;
            }
        }
    }
    false
}

/// Removes git lock files no live process holds; returns what was removed.
pub fn clear_stale_locks(git: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for lock in lock_files(git) {
        if !held_open(&lock) && std::fs::remove_file(&lock).is_ok() {
            removed.push(lock);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with_commit() -> (tempfile::TempDir, Repository, Oid) {
        let dir = tempfile::tempdir().expect("tmp");
        let repo = Repository::init(dir.path()).expect("init");
        std::fs::write(dir.path().join("m1.json"), "{\"id\":\"m1\"}\n").expect("write");
        let mut index = repo.index().expect("index");
        index.add_path(Path::new("m1.json")).expect("add");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("tree");
        let sig = git2::Signature::now("t", "t@t").expect("sig");
        let head = repo
            .commit(Some("HEAD"), &sig, &sig, "first", &tree, &[])
            .expect("commit");
        drop(tree);
        (dir, repo, head)
    }

    #[test]
    fn a_whole_repository_passes() {
        let (_dir, repo, _) = repo_with_commit();
        assert_eq!(verify_head(&repo).expect("ok").objects, 3);
    }

    #[test]
    fn a_truncated_blob_is_named() {
        let (_dir, repo, head) = repo_with_commit();
        let blob = repo
            .find_commit(head)
            .and_then(|c| c.tree())
            .map(|t| t.get_name("m1.json").map(|e| e.id()))
            .expect("tree")
            .expect("entry");
        let hex = blob.to_string();
        let path = repo.path().join("objects").join(&hex[..2]).join(&hex[2..]);
        let bytes = std::fs::read(&path).expect("read");
        let mut perms = std::fs::metadata(&path).expect("stat").permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&path, perms).expect("chmod");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
        let err = verify_head(&repo).expect_err("damaged").to_string();
        assert!(err.contains(&format!("blob {blob} (m1.json)")), "{err}");
        assert!(err.contains("truncated"), "{err}");
        assert!(err.contains("move it aside"), "{err}");
    }

    #[test]
    fn stale_locks_go_and_held_ones_stay() {
        let (_dir, repo, _) = repo_with_commit();
        let stale = repo.path().join("index.lock");
        std::fs::write(&stale, "").expect("lock");
        let held_path = repo.path().join("refs/heads/main.lock");
        std::fs::write(&held_path, "").expect("lock");
        let _held = std::fs::File::open(&held_path).expect("hold");
        let removed = clear_stale_locks(repo.path());
        assert_eq!(removed, vec![stale.clone()]);
        assert!(!stale.exists());
        assert!(held_path.exists());
    }
}
