//! The inventory behind one narrow interface: load everything at start, save or remove one
//! machine per change, read a machine's history. The local backend keeps machine files plus a
//! git audit repository; nothing else in the engine knows which backend is in use.

pub mod audit;
pub mod files;

use std::path::{Path, PathBuf};

use crate::machine::{Machine, MachineId};
pub use audit::HistoryEntry;
pub use files::LoadProblem;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("inventory folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit: {0}")]
    Audit(#[from] audit::AuditError),
    #[error("audit history is off (audit.git: false)")]
    NoAudit,
}

/// Why a machine was written, and by whom.
#[derive(Debug, Clone)]
pub struct Change {
    pub actor: String,
    pub what: String,
}

pub trait Backend: Send + Sync {
    /// Every machine, plus the files that could not be read (reported, left untouched).
    fn load(&self) -> Result<(Vec<Machine>, Vec<LoadProblem>), InventoryError>;
    fn save(&self, m: &Machine, change: &Change) -> Result<(), InventoryError>;
    fn remove(&self, id: &MachineId, change: &Change) -> Result<(), InventoryError>;
    fn history(&self, id: &MachineId) -> Result<Vec<HistoryEntry>, InventoryError>;
    /// Waits until every change so far is durable in the audit trail.
    fn flush(&self) -> Result<(), InventoryError>;
}

/// Machine files in a folder, each change committed to a git repository there.
pub struct LocalBackend {
    dir: PathBuf,
    audit: Option<audit::GitAudit>,
}

impl LocalBackend {
    pub fn open(dir: &Path, git: bool, author: &str) -> Result<LocalBackend, InventoryError> {
        let io = |source| InventoryError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let audit = if git {
            Some(audit::GitAudit::open(dir, author)?)
        } else {
            None
        };
        Ok(LocalBackend {
            dir: dir.to_path_buf(),
            audit,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn record(&self, id: &MachineId, present: bool, change: &Change) -> Result<(), InventoryError> {
        if let Some(a) = &self.audit {
            a.record(audit::Record {
                id: id.clone(),
                file: format!("{id}.json"),
                present,
                what: change.what.clone(),
                author: change.actor.clone(),
            })?;
        }
        Ok(())
    }
}

impl Backend for LocalBackend {
    fn load(&self) -> Result<(Vec<Machine>, Vec<LoadProblem>), InventoryError> {
        files::load_dir(&self.dir).map_err(|source| InventoryError::Io {
            path: self.dir.clone(),
            source,
        })
    }

    fn save(&self, m: &Machine, change: &Change) -> Result<(), InventoryError> {
        let path = files::machine_path(&self.dir, &m.id);
        files::write_atomic(&path, &files::encode(m))
            .map_err(|source| InventoryError::Io { path, source })?;
        self.record(&m.id, true, change)
    }

    fn remove(&self, id: &MachineId, change: &Change) -> Result<(), InventoryError> {
        let path = files::machine_path(&self.dir, id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(InventoryError::Io { path, source }),
        }
        let _ = files::sync_dir(&self.dir);
        self.record(id, false, change)
    }

    fn history(&self, id: &MachineId) -> Result<Vec<HistoryEntry>, InventoryError> {
        match &self.audit {
            Some(a) => Ok(a.history(id, &format!("{id}.json"))?),
            None => Err(InventoryError::NoAudit),
        }
    }

    fn flush(&self) -> Result<(), InventoryError> {
        if let Some(a) = &self.audit {
            a.flush()?;
        }
        Ok(())
    }
}
