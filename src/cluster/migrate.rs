//! `mayu inventory push` and `mayu inventory pull`: a local inventory folder into etcd, and
//! etcd's machines into the local folder. Both are idempotent: a machine already on the other
//! side with the same record is left alone (a second run changes nothing), and one with a
//! different record is reported as a conflict, never overwritten.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use futures_util::StreamExt;

use crate::cluster::store::{ChangeInfo, Check, ClusterError, MachineRecord, Op, Seat, Store};
use crate::config::Config;
use crate::inventory::{Backend, Change, InventoryError, LocalBackend, Write};
use crate::machine::{Machine, MachineId};

/// The actor of every record `push` writes.
pub const PUSH_ACTOR: &str = "mayu inventory push";
/// How many of a push's transactions are in flight at once.
const PUSH_IN_FLIGHT: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{}: no `cluster:` section: nothing to push to or pull from", .0.display())]
    NoCluster(std::path::PathBuf),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("the local inventory writer stopped: {0}")]
    Writer(String),
}

/// A machine left alone because the other side holds a different record (or no seat is free).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub id: MachineId,
    pub reason: String,
}

/// What a push or pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// copied to the other side.
    pub copied: Vec<MachineId>,
    /// already there with the same record: left alone.
    pub already: Vec<MachineId>,
    /// different on the other side (or no free seat): left alone, reported.
    pub conflicts: Vec<Conflict>,
    /// records or files that could not be read on the source side (left untouched).
    pub unreadable: Vec<String>,
}

impl Report {
    /// `3 pushed, 2 already there` (plus conflicts and unreadable ones when there are any).
    pub fn summary(&self, verb: &str) -> String {
        let mut s = format!(
            "{} {verb}, {} already there",
            self.copied.len(),
            self.already.len()
        );
        if !self.conflicts.is_empty() {
            s.push_str(&format!(", {} in conflict", self.conflicts.len()));
        }
        if !self.unreadable.is_empty() {
            s.push_str(&format!(", {} unreadable", self.unreadable.len()));
        }
        s
    }
}

/// A machine as its record compares: the stored JSON (no token, no stall).
fn stored(m: &Machine) -> serde_json::Value {
    let mut m = m.clone();
    m.stall = None;
    serde_json::to_value(&m).unwrap_or(serde_json::Value::Null)
}

fn describe(change: &ChangeInfo) -> String {
    let at = change
        .at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        "last changed by {} on {} at {at}: {}",
        change.actor, change.server, change.what
    )
}

/// `mayu inventory push`: every machine of `config`'s local inventory folder into etcd, each
/// as a record changed by [`PUSH_ACTOR`]; an assigned machine of a profile with a quantity
/// takes a free seat of it in the same transaction (none free: a conflict).
pub async fn push(config: &Config) -> Result<Report, MigrateError> {
    let store = connect(config).await?;
    // The folder's machine key goes up with the first folder (or the cluster's comes down):
    // the tokens installed machines hold stay valid on every server.
    super::key::join(&store, &config.inventory).await?;
    push_dir(&store, &config.inventory, config).await
}

/// The etcd cluster of `config`'s `cluster:` section.
async fn connect(config: &Config) -> Result<Store, MigrateError> {
    let cluster = config
        .cluster
        .as_ref()
        .ok_or_else(|| MigrateError::NoCluster(config.file.clone()))?;
    Ok(Store::connect(cluster).await?)
}

/// [`push`] of the machine files in `dir` through `store`.
pub async fn push_dir(store: &Store, dir: &Path, config: &Config) -> Result<Report, MigrateError> {
    let (mut machines, problems) = LocalBackend::open_read_only(dir).load()?;
    machines.sort_by(|a, b| a.id.cmp(&b.id));
    let mut report = Report {
        unreadable: problems
            .iter()
            .map(|p| format!("{}: {}", p.file.display(), p.error))
            .collect(),
        ..Report::default()
    };
    let snapshot = store.load().await?;
    report.unreadable.extend(
        snapshot
            .problems
            .iter()
            .map(|p| format!("etcd {}: {}", p.key, p.reason)),
    );
    let there: HashMap<&MachineId, &MachineRecord> = snapshot
        .machines
        .iter()
        .map(|(r, _)| (&r.machine.id, r))
        .collect();
    let mut taken: HashMap<String, BTreeSet<u32>> = HashMap::new();
    for (seat, _) in &snapshot.seats {
        taken
            .entry(seat.profile.clone())
            .or_default()
            .insert(seat.index);
    }
    let what = format!("pushed from {}'s folder", store.name());
    let mut planned = Vec::new();
    for m in machines {
        if let Some(r) = there.get(&m.id) {
            if stored(&r.machine) == stored(&m) {
                report.already.push(m.id.clone());
            } else {
                report.conflicts.push(Conflict {
                    id: m.id.clone(),
                    reason: format!(
                        "etcd holds a different record ({}); not overwritten",
                        describe(&r.change)
                    ),
                });
            }
            continue;
        }
        let mut checks = vec![Check::MachineAt {
            id: m.id.clone(),
            revision: 0,
        }];
        let mut ops = Vec::new();
        let quantity = m
            .profile
            .as_deref()
            .and_then(|p| config.profile(p))
            .and_then(|p| p.quantity);
        if let (Some(profile), Some(quantity)) = (m.profile.clone(), quantity) {
            let used = taken.entry(profile.clone()).or_default();
            let Some(index) = (0..quantity).find(|k| !used.contains(k)) else {
                report.conflicts.push(Conflict {
                    id: m.id.clone(),
                    reason: format!(
                        "profile {profile} is full in etcd ({quantity} of {quantity} seats taken); not pushed"
                    ),
                });
                continue;
            };
            used.insert(index);
            let seat = Seat { profile, index };
            checks.push(Check::SeatFree(seat.clone()));
            ops.push(Op::TakeSeat {
                seat,
                id: m.id.clone(),
            });
        }
        let id = m.id.clone();
        ops.insert(
            0,
            Op::PutMachine(Box::new(MachineRecord {
                machine: m,
                change: ChangeInfo::now(PUSH_ACTOR, what.clone(), store.name()),
            })),
        );
        planned.push((id, checks, ops));
    }
    // One transaction per machine (a conflict fails that machine alone), several in flight:
    // seats were picked above, so they never race each other.
    let mut answers = futures_util::stream::iter(planned)
        .map(|(id, checks, ops)| async move {
            let answer = store.txn(&checks, &ops).await;
            (id, answer)
        })
        .buffer_unordered(PUSH_IN_FLIGHT);
    while let Some((id, answer)) = answers.next().await {
        match answer {
            Ok(_) => report.copied.push(id),
            Err(ClusterError::Conflict { failed, .. }) => report.conflicts.push(Conflict {
                id,
                reason: format!(
                    "changed in etcd meanwhile (no longer true: {}); not pushed",
                    failed
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    report.copied.sort();
    report.conflicts.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(report)
}

/// `mayu inventory pull`: etcd's machines into `config`'s local inventory folder, each one
/// written and committed to the folder's git audit as the change its record carries
/// (`<what> (on <server>)`, by its actor). Needs the folder's lock (no mayu running on it).
pub async fn pull(config: &Config) -> Result<Report, MigrateError> {
    let store = connect(config).await?;
    let (dir, git, author) = (
        config.inventory.clone(),
        config.audit.git,
        config.audit.author.clone(),
    );
    let backend = tokio::task::spawn_blocking(move || LocalBackend::open(&dir, git, &author))
        .await
        .map_err(|e| MigrateError::Writer(e.to_string()))??;
    super::key::join(&store, &config.inventory).await?;
    pull_into(&store, backend).await
}

/// [`pull`] from `store` into `backend` (opened to write).
pub async fn pull_into(store: &Store, backend: LocalBackend) -> Result<Report, MigrateError> {
    let snapshot = store.load().await?;
    tokio::task::spawn_blocking(move || {
        let (local, problems) = backend.load()?;
        let mut report = Report {
            unreadable: snapshot
                .problems
                .iter()
                .map(|p| format!("etcd {}: {}", p.key, p.reason))
                .collect(),
            ..Report::default()
        };
        // A file that could not be read is left as it is: never overwritten from etcd.
        let unreadable: BTreeSet<&Path> = problems.iter().map(|p| p.file.as_path()).collect();
        let local: HashMap<&MachineId, &Machine> = local.iter().map(|m| (&m.id, m)).collect();
        let mut writes = Vec::new();
        for (record, _) in &snapshot.machines {
            let id = &record.machine.id;
            let file = crate::inventory::files::machine_path(backend.dir(), id);
            match local.get(id) {
                Some(m) if stored(m) == stored(&record.machine) => report.already.push(id.clone()),
                Some(_) => report.conflicts.push(Conflict {
                    id: id.clone(),
                    reason: format!(
                        "{} differs from etcd's record ({}); not overwritten",
                        file.display(),
                        describe(&record.change)
                    ),
                }),
                None if unreadable.contains(file.as_path()) => report.conflicts.push(Conflict {
                    id: id.clone(),
                    reason: format!("{} cannot be read; not overwritten", file.display()),
                }),
                None => {
                    let what = if record.change.what.is_empty() {
                        "pulled from etcd"
                    } else {
                        record.change.what.as_str()
                    };
                    writes.push(Write {
                        id: id.clone(),
                        machine: Some(record.machine.clone()),
                        change: Change {
                            actor: record.change.actor.clone(),
                            what: format!("{what} (on {})", record.change.server),
                        },
                        base: 0,
                    });
                    report.copied.push(id.clone());
                }
            }
        }
        if !writes.is_empty() {
            backend.write_group(&writes)?;
        }
        backend.flush()?;
        Ok(report)
    })
    .await
    .map_err(|e| MigrateError::Writer(e.to_string()))?
}
