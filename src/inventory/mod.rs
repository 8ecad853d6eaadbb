//! The inventory behind one narrow interface: load everything at start, save or remove one
//! machine per change, read a machine's history. The local backend keeps machine files plus a
//! git audit repository; nothing else in the engine knows which backend is in use.
//! How a change becomes durable and audited: `DESIGN.md` beside this file.

pub mod audit;
pub mod files;
pub mod integrity;
pub mod journal;
pub mod lock;
pub mod machine_key;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::machine::{Machine, MachineId};
pub use audit::{AuditHealth, HistoryEntry};
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
    #[error(transparent)]
    Locked(#[from] lock::LockError),
    #[error("the inventory was opened read-only")]
    ReadOnly,
    #[error("audit history is off (audit.git: false)")]
    NoAudit,
}

impl InventoryError {
    /// Whether the disk is full (507 rather than 503).
    pub fn storage_full(&self) -> bool {
        match self {
            InventoryError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            InventoryError::Audit(audit::AuditError::Journal { source, .. }) => {
                source.kind() == std::io::ErrorKind::StorageFull
            }
            _ => false,
        }
    }
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
    /// Waits until every change so far is committed to the audit trail.
    fn flush(&self) -> Result<(), InventoryError>;
    /// [`Backend::flush`] with a deadline (shutdown); past it, says what is still pending.
    fn flush_within(&self, deadline: Duration) -> Result<(), InventoryError> {
        let _ = deadline;
        self.flush()
    }
    /// The audit's state as it changes; `None` when there is no audit.
    fn audit_health(&self) -> Option<watch::Receiver<AuditHealth>> {
        None
    }
    /// Opened to read only: every write is refused.
    fn read_only(&self) -> bool {
        false
    }
}

/// Machine files in a folder, each change committed to a git repository there.
pub struct LocalBackend {
    dir: PathBuf,
    audit: Option<audit::GitAudit>,
    /// `None` when opened read-only (`mayu render` beside a running mayu).
    _lock: Option<lock::InventoryLock>,
}

impl LocalBackend {
    /// Opens the inventory as its one writer: locks the folder (a second mayu is refused and
    /// told who holds it), makes it private, removes temp files a crash left, opens the audit.
    pub fn open(dir: &Path, git: bool, author: &str) -> Result<LocalBackend, InventoryError> {
        let io = |source| InventoryError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = lock::InventoryLock::acquire(dir)?;
        files::restrict(dir).map_err(io)?;
        let swept = files::sweep_temp(dir);
        if swept > 0 {
            tracing::warn!(
                count = swept,
                "removed temp files left by an interrupted write"
            );
        }
        let audit = if git {
            Some(audit::GitAudit::open(dir, author)?)
        } else {
            None
        };
        Ok(LocalBackend {
            dir: dir.to_path_buf(),
            audit,
            _lock: Some(lock),
        })
    }

    /// Opens the inventory to read only: no lock, no audit thread; every write is refused.
    pub fn open_read_only(dir: &Path) -> LocalBackend {
        LocalBackend {
            dir: dir.to_path_buf(),
            audit: None,
            _lock: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn writable(&self) -> Result<(), InventoryError> {
        match self._lock {
            Some(_) => Ok(()),
            None => Err(InventoryError::ReadOnly),
        }
    }

    fn record(
        &self,
        id: &MachineId,
        content: Option<String>,
        change: &Change,
    ) -> Result<(), InventoryError> {
        if let Some(a) = &self.audit {
            a.append(vec![audit::Change {
                id: id.clone(),
                file: format!("{id}.json"),
                content,
                what: change.what.clone(),
                author: change.actor.clone(),
            }])?;
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
        self.writable()?;
        let path = files::machine_path(&self.dir, &m.id);
        let bytes = files::encode(m).map_err(|source| InventoryError::Io {
            path: path.clone(),
            source,
        })?;
        files::write_atomic(&path, &bytes).map_err(|source| InventoryError::Io { path, source })?;
        // The file is durable; the change is acknowledged only once its audit record is too.
        self.record(
            &m.id,
            Some(String::from_utf8_lossy(&bytes).into_owned()),
            change,
        )
    }

    fn remove(&self, id: &MachineId, change: &Change) -> Result<(), InventoryError> {
        self.writable()?;
        let path = files::machine_path(&self.dir, id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(InventoryError::Io { path, source }),
        }
        files::sync_dir(&self.dir).map_err(|source| InventoryError::Io {
            path: self.dir.clone(),
            source,
        })?;
        self.record(id, None, change)
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

    fn flush_within(&self, deadline: Duration) -> Result<(), InventoryError> {
        if let Some(a) = &self.audit {
            a.flush_within(deadline)?;
        }
        Ok(())
    }

    fn audit_health(&self) -> Option<watch::Receiver<AuditHealth>> {
        self.audit.as_ref().map(|a| a.watch_health())
    }

    fn read_only(&self) -> bool {
        self._lock.is_none()
    }
}
