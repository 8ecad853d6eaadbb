//! Machine files: one pretty JSON file per machine (mode 0600: it holds the machine's token),
//! written atomically, loaded in parallel; an unreadable one is reported with what could still
//! be read from it, so its place is kept.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::machine::{Machine, MachineId};

/// Reads one machine file: `None` when there is none.
pub fn read_machine(dir: &Path, id: &MachineId) -> Result<Option<Machine>, String> {
    let path = machine_path(dir, id);
    if !path.exists() {
        return Ok(None);
    }
    load_one(&path).map(Some)
}

pub fn machine_path(dir: &Path, id: &MachineId) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Machine files are private to mayu: they name the machine's profile and overrides.
pub const MODE: u32 = 0o600;

pub fn encode(m: &Machine) -> io::Result<Vec<u8>> {
    // A stall is live state, not part of the record.
    let unstalled;
    let m = if m.stall.is_some() {
        unstalled = Machine {
            stall: None,
            ..m.clone()
        };
        &unstalled
    } else {
        m
    };
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
