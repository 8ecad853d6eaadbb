//! Machine files: one pretty JSON file per machine (mode 0600: it holds the machine's token),
//! written atomically, loaded in parallel; an unreadable one is reported with what could still
//! be read from it, so its place is kept.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::machine::{Machine, MachineId};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file written next to its destination but not yet in place. Dropping it without
/// [`Staged::commit`] removes the temp file and leaves the destination as it was.
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

/// Writes `bytes` to a temp file beside `dest` and syncs it to disk.
pub fn stage(dest: &Path, bytes: &[u8]) -> io::Result<Staged> {
    let staged = stage_unsynced(dest, bytes)?;
    File::open(&staged.tmp)?.sync_all()?;
    Ok(staged)
}

/// [`stage`] without the sync: the caller makes a whole group durable at once.
fn stage_unsynced(dest: &Path, bytes: &[u8]) -> io::Result<Staged> {
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
            .mode(0o600)
            .open(&tmp)?;
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
pub fn write_group(dir: &Path, files: &[(PathBuf, Option<&[u8]>)]) -> io::Result<()> {
    let mut staged = Vec::with_capacity(files.len());
    for (dest, bytes) in files {
        if let Some(bytes) = bytes {
            staged.push(stage_unsynced(dest, bytes)?);
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

/// Reads one machine file: `None` when there is none.
pub fn read_machine(dir: &Path, id: &MachineId) -> Result<Option<Machine>, String> {
    let path = machine_path(dir, id);
    if !path.exists() {
        return Ok(None);
    }
    load_one(&path).map(Some)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Temp-file-then-rename write of a whole file.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    stage(dest, bytes)?.commit()
}

pub fn machine_path(dir: &Path, id: &MachineId) -> PathBuf {
    dir.join(format!("{id}.json"))
}

pub fn encode(m: &Machine) -> io::Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(m).map_err(io::Error::other)?;
    v.push(b'\n');
    Ok(v)
}

/// A machine file that could not be loaded; it is left untouched, and what could still be read
/// from it keeps its place (its id and MACs are not re-registered, its profile seat is held).
#[derive(Debug, Clone)]
pub struct LoadProblem {
    pub file: PathBuf,
    pub error: String,
    /// the id its name gives.
    pub id: Option<MachineId>,
    /// the id, MACs and profile read leniently from its content, when it parses as JSON at all.
    pub held_id: Option<MachineId>,
    pub macs: Vec<crate::machine::Mac>,
    pub profile: Option<String>,
}

impl LoadProblem {
    fn new(file: PathBuf, error: String) -> LoadProblem {
        let id = file
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<MachineId>().ok());
        let value: Option<serde_json::Value> = fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let field = |k: &str| value.as_ref().and_then(|v| v.get(k)).cloned();
        LoadProblem {
            held_id: field("id").and_then(|v| v.as_str().and_then(|s| s.parse::<MachineId>().ok())),
            macs: field("macs")
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m.as_str().and_then(|s| s.parse().ok()))
                .collect(),
            profile: field("profile").and_then(|v| v.as_str().map(str::to_string)),
            id,
            file,
            error,
        }
    }
}

/// Makes the machine files of `dir` private to their owner (they hold per-machine tokens).
pub fn restrict(dir: &Path) -> io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    for e in fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".json") {
            continue;
        }
        if let Ok(m) = e.metadata() {
            if m.is_file() && m.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(e.path(), fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

/// Removes temp files a crashed or failed write left (`.NAME.tmp.PID.N`).
pub fn sweep_temp(dir: &Path) -> usize {
    let mut removed = 0;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp.") && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn load_one(path: &Path) -> Result<Machine, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let m: Machine = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let expected = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if m.id.as_str() != expected {
        return Err(format!(
            "file holds machine `{}`, but its name says `{expected}`",
            m.id
        ));
    }
    Ok(m)
}

/// Loads every `*.json` machine file in `dir`, spreading the parsing over the cores.
pub fn load_dir(dir: &Path) -> io::Result<(Vec<Machine>, Vec<LoadProblem>)> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        paths.push(entry.path());
    }
    paths.sort();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let chunk = paths.len().div_ceil(workers).max(1);
    let results: Vec<Vec<(PathBuf, Result<Machine, String>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|p| (p.clone(), load_one(p)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().map_err(|_| {
                    io::Error::other(
                        "a machine file loader thread panicked; refusing a partial inventory",
                    )
                })
            })
            .collect::<io::Result<Vec<_>>>()
    })?;
    let mut machines = Vec::with_capacity(paths.len());
    let mut problems = Vec::new();
    for (path, r) in results.into_iter().flatten() {
        match r {
            Ok(m) => machines.push(m),
            Err(error) => problems.push(LoadProblem::new(path, error)),
        }
    }
    Ok((machines, problems))
}
