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
    /// Another server changed the machine (or took the seat) first: decide again on the
    /// fresh state. Shared backends only.
    #[error("changed elsewhere first: {0}")]
    Conflict(String),
    /// The shared store cannot be reached: nothing was written.
    #[error("the shared inventory is unreachable: {0}")]
    Unavailable(String),
    /// The shared store holds something this server cannot use (not a passing outage).
    #[error("the shared inventory: {0}")]
    Shared(String),
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

impl InventoryError {
    /// The same error for another waiter (one failed group write answers every change in it).
    pub fn duplicate(&self) -> InventoryError {
        let copy = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        match self {
            InventoryError::Io { path, source } => InventoryError::Io {
                path: path.clone(),
                source: copy(source),
            },
            InventoryError::Audit(audit::AuditError::Journal { path, source }) => {
                InventoryError::Audit(audit::AuditError::Journal {
                    path: path.clone(),
                    source: copy(source),
                })
            }
            InventoryError::ReadOnly => InventoryError::ReadOnly,
            InventoryError::NoAudit => InventoryError::NoAudit,
            InventoryError::Conflict(why) => InventoryError::Conflict(why.clone()),
            InventoryError::Unavailable(why) => InventoryError::Unavailable(why.clone()),
            InventoryError::Shared(why) => InventoryError::Shared(why.clone()),
            other => InventoryError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

/// Why a machine was written, and by whom.
#[derive(Debug, Clone)]
pub struct Change {
    pub actor: String,
    pub what: String,
}

/// One change in a group write: the machine's new record, or `None` to remove its file.
#[derive(Debug, Clone)]
pub struct Write {
    pub id: MachineId,
    pub machine: Option<Machine>,
    pub change: Change,
    /// the backend's revision of the machine this change was decided on (see
    /// [`Backend::revisions`]); 0 for a new machine, ignored by the local backend.
    pub base: u64,
}

/// A shared backend's link to its store, as the services list, readiness and the console
/// header show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLink {
    /// the store answers: changes can be written.
    pub up: bool,
    /// members, leader, this server's name; or why the store is unreachable.
    pub detail: String,
}

/// A change another server made, as a shared backend's watch delivers it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub id: MachineId,
    /// the machine now, or `None`: retired.
    pub machine: Option<Machine>,
    pub change: Change,
    /// its revision in the shared store.
    pub revision: u64,
}

pub trait Backend: Send + Sync {
    /// Every machine, plus the files that could not be read (reported, left untouched).
    fn load(&self) -> Result<(Vec<Machine>, Vec<LoadProblem>), InventoryError>;
    /// Makes a group of changes durable, in order: each machine's file ends as its last write
    /// says, and every change has its own audit record. Returns once all of it is on disk.
    fn write_group(&self, writes: &[Write]) -> Result<(), InventoryError>;
    /// One machine as its file holds it now (`None`: no file), to put back a failed write.
    fn read_machine(&self, id: &MachineId) -> Result<Option<Machine>, InventoryError>;
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
    /// Writes each change on its own, in order; one result each (the revision it got, 0 for
    /// a backend without revisions). A shared backend refuses one change (a conflict) without
    /// failing the others; the local one writes the group as one.
    fn write_each(&self, writes: &[Write]) -> Vec<Result<u64, InventoryError>> {
        match self.write_group(writes) {
            Ok(()) => writes.iter().map(|_| Ok(0)).collect(),
            Err(e) => writes.iter().map(|_| Err(e.duplicate())).collect(),
        }
    }
    /// One machine's revision now, after [`Backend::read_machine`] (shared backends; else 0).
    fn revision_of(&self, id: &MachineId) -> u64 {
        let _ = id;
        0
    }
    /// Each machine's revision as loaded (shared backends; empty otherwise).
    fn revisions(&self) -> std::collections::HashMap<MachineId, u64> {
        std::collections::HashMap::new()
    }
    /// The link to a shared store as it changes (`None`: this backend has no shared store).
    fn store_link(&self) -> Option<watch::Receiver<StoreLink>> {
        None
    }
    /// Starts delivering other servers' changes to `sink` (shared backends; the local one has
    /// none). Called once, after [`Backend::load`].
    fn follow(&self, sink: Box<dyn Fn(Remote) + Send + Sync>) {
        let _ = sink;
    }
    /// Calls `rekey` when the folder's machine key is replaced while the server runs (a
    /// shared backend that could join its cluster's key only once the store answered).
    /// Called once, before [`Backend::follow`].
    fn follow_key(&self, rekey: Box<dyn Fn() + Send + Sync>) {
        let _ = rekey;
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
}

impl Backend for LocalBackend {
    fn load(&self) -> Result<(Vec<Machine>, Vec<LoadProblem>), InventoryError> {
        files::load_dir(&self.dir).map_err(|source| InventoryError::Io {
            path: self.dir.clone(),
            source,
        })
    }

    fn write_group(&self, writes: &[Write]) -> Result<(), InventoryError> {
        self.writable()?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| InventoryError::Io { path, source }
        };
        let mut encoded = Vec::with_capacity(writes.len());
        for w in writes {
            let bytes = match &w.machine {
                Some(m) => {
                    Some(files::encode(m).map_err(io(&files::machine_path(&self.dir, &w.id)))?)
                }
                None => None,
            };
            encoded.push(bytes);
        }
        // Each file once, as its last change in the group leaves it.
        let mut last: std::collections::HashMap<&MachineId, usize> =
            std::collections::HashMap::with_capacity(writes.len());
        for (i, w) in writes.iter().enumerate() {
            last.insert(&w.id, i);
        }
        let mut order: Vec<usize> = last.into_values().collect();
        order.sort_unstable();
        let group: Vec<(PathBuf, Option<&[u8]>)> = order
            .iter()
            .map(|&i| {
                (
                    files::machine_path(&self.dir, &writes[i].id),
                    encoded[i].as_deref(),
                )
            })
            .collect();
        crate::atomic::write_group(&self.dir, &group, files::MODE).map_err(io(&self.dir))?;
        // The files are durable; the changes are acknowledged only once their audit records
        // are too.
        if let Some(a) = &self.audit {
            let records = writes
                .iter()
                .zip(encoded)
                .map(|(w, bytes)| audit::Change {
                    id: w.id.clone(),
                    file: format!("{}.json", w.id),
                    content: bytes.map(|b| String::from_utf8_lossy(&b).into_owned()),
                    what: w.change.what.clone(),
                    author: w.change.actor.clone(),
                })
                .collect();
            a.append(records)?;
        }
        Ok(())
    }

    fn read_machine(&self, id: &MachineId) -> Result<Option<Machine>, InventoryError> {
        files::read_machine(&self.dir, id).map_err(|e| InventoryError::Io {
            path: files::machine_path(&self.dir, id),
            source: std::io::Error::other(e),
        })
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
