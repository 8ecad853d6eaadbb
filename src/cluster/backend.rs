//! The etcd inventory backend (`DESIGN.md` beside this file): machines and quota seats in
//! etcd, written by compare-and-swap; a watch that brings every server's changes into the
//! engine and into this server's folder, which stays its cache and git audit mirror.
//!
//! The engine's writer thread calls [`Backend::write_each`]: each change is one transaction
//! that holds only if the machine is still at the revision the change was decided on (and, for
//! an assignment, the seat it takes is free). A change that loses fails alone with
//! [`InventoryError::Conflict`]; the engine puts the machine back as etcd holds it and the
//! request decides again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use super::store::{
    ChangeInfo, Check, ClusterError, MachineRecord, Op, Revision, Seat, ServerInfo, Store,
    WatchEvent,
};
use crate::config::Config;
use crate::inventory::{
    AuditHealth, Backend, Change, HistoryEntry, InventoryError, LoadProblem, LocalBackend, Remote,
    StoreLink, Write,
};
use crate::machine::{Machine, MachineId};

/// How long one call to etcd may take from the writer thread before it counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Backend::flush`] waits for the watch to bring this server's own writes into the
/// mirror.
const MIRROR_WAIT: Duration = Duration::from_secs(30);
/// In the mirror's folder: the etcd revision the mirror holds everything up to, so a restart
/// replays each change it missed (its own commit) rather than one sync of the differences.
const REVISION_FILE: &str = ".cluster-revision";
/// The engine's wording of an assignment past a full quota (see `Engine::assign`).
const FORCED: &str = "(forced)";

/// How often the cluster's members and leader are asked for the services list.
const STATUS_EVERY: Duration = Duration::from_secs(3);

/// What this server knows of etcd: each machine's revision and record, and the seats.
#[derive(Default)]
struct View {
    revs: HashMap<MachineId, u64>,
    records: HashMap<MachineId, Machine>,
    seats: HashMap<String, BTreeMap<u32, MachineId>>,
    seat_of: HashMap<MachineId, Seat>,
    seat_revs: HashMap<Seat, u64>,
    /// this server's last write of each machine: (the revision it was decided on, the one it
    /// got), so a change queued on top of it before the engine learnt the new revision holds.
    chain: HashMap<MachineId, (u64, u64)>,
    /// revisions this server wrote that the watch has not delivered yet.
    own: BTreeSet<u64>,
    /// the last revision each machine's mirror file was written at.
    mirrored: HashMap<MachineId, u64>,
    /// the newest revision this server wrote, and the newest the mirror holds.
    written: u64,
    mirrored_up_to: u64,
}

impl View {
    fn take_seat(&mut self, seat: Seat, id: MachineId, rev: u64) {
        if self.seat_revs.get(&seat).is_some_and(|r| *r > rev) {
            return;
        }
        self.seat_revs.insert(seat.clone(), rev);
        if let Some(old) = self.seat_of.insert(id.clone(), seat.clone()) {
            if old != seat {
                self.drop_seat_entry(&old, &id);
            }
        }
        self.seats
            .entry(seat.profile.clone())
            .or_default()
            .insert(seat.index, id);
    }

    fn free_seat(&mut self, seat: &Seat, rev: u64) {
        if self.seat_revs.get(seat).is_some_and(|r| *r > rev) {
            return;
        }
        self.seat_revs.insert(seat.clone(), rev);
        if let Some(id) = self
            .seats
            .get_mut(&seat.profile)
            .and_then(|s| s.remove(&seat.index))
        {
            if self.seat_of.get(&id) == Some(seat) {
                self.seat_of.remove(&id);
            }
        }
    }

    fn drop_seat_entry(&mut self, seat: &Seat, id: &MachineId) {
        if let Some(s) = self.seats.get_mut(&seat.profile) {
            if s.get(&seat.index) == Some(id) {
                s.remove(&seat.index);
            }
        }
    }

    /// A free seat of `profile` (of `quantity`), looked for from `offset` on, not one of
    /// `reserved` (taken by another change of the same group).
    fn free_seat_of(
        &self,
        profile: &str,
        quantity: u32,
        offset: u32,
        reserved: &std::collections::HashSet<Seat>,
    ) -> Option<Seat> {
        let taken = self.seats.get(profile);
        (0..quantity)
            .map(|i| (offset + i) % quantity)
            .map(|index| Seat {
                profile: profile.to_string(),
                index,
            })
            .find(|s| !taken.is_some_and(|t| t.contains_key(&s.index)) && !reserved.contains(s))
    }
}

fn rev(r: Revision) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

fn unavailable(e: ClusterError) -> InventoryError {
    InventoryError::Unavailable(e.to_string())
}

/// The machines of a shared etcd inventory; this server's folder as cache and audit mirror.
pub struct EtcdBackend {
    rt: Arc<tokio::runtime::Runtime>,
    store: Store,
    name: String,
    /// where this server starts looking for a free seat (from its name: servers spread out).
    offset: u32,
    quantities: HashMap<String, u32>,
    mirror: Arc<LocalBackend>,
    view: Arc<Mutex<View>>,
    /// held from a transaction until its revision is in `own`, so the watch never takes this
    /// server's own write for another's.
    gate: Arc<tokio::sync::RwLock<()>>,
    snapshot: Mutex<Revision>,
    link: watch::Sender<StoreLink>,
    mirrored: watch::Sender<u64>,
    /// what this server says of itself under `servers/<name>`, while it runs.
    info: ServerInfo,
    key: KeyJoin,
}

/// Joining the cluster's machine key (`<prefix>/machine-key`): at the start, or once etcd
/// answers when it did not then.
#[derive(Clone)]
struct KeyJoin {
    store: Store,
    dir: std::path::PathBuf,
    joined: Arc<AtomicBool>,
    /// the engine's, told when the folder's key was replaced after the start.
    rekey: Arc<OnceLock<Box<dyn Fn() + Send + Sync>>>,
    /// the last failure logged (each is logged once, not every status round).
    failed: Arc<Mutex<String>>,
}

impl KeyJoin {
    /// Joins unless joined already; whether the folder's key changed.
    async fn join(&self) -> Result<bool, InventoryError> {
        if self.joined.load(Ordering::Acquire) {
            return Ok(false);
        }
        let changed = super::key::join(&self.store, &self.dir).await?;
        self.joined.store(true, Ordering::Release);
        if changed {
            tracing::warn!(
                "this inventory's machine key is now the cluster's; tokens of the old one stay valid"
            );
        }
        Ok(changed)
    }

    /// [`KeyJoin::join`] after the start: a changed key goes to the engine.
    async fn join_late(&self) {
        match self.join().await {
            Ok(true) => {
                if let Some(rekey) = self.rekey.get() {
                    rekey();
                }
            }
            Ok(false) => {}
            Err(e) => {
                let e = e.to_string();
                let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                if *failed != e {
                    tracing::error!(error = %e, "cluster machine key not joined; retried");
                    *failed = e;
                }
            }
        }
    }
}

/// The link is down: why, in the operator's words.
fn link_down(link: &watch::Sender<StoreLink>, why: &str) {
    link.send_if_modified(|l| {
        let detail = format!(
            "etcd unreachable: {why}; known machines are served from memory, new ones are held"
        );
        let changed = l.up || l.detail != detail;
        *l = StoreLink { up: false, detail };
        changed
    });
}

impl EtcdBackend {
    /// Connects to `config.cluster`'s etcd and opens this server's folder as the mirror.
    pub fn open(config: &Config) -> Result<EtcdBackend, InventoryError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|source| InventoryError::Io {
                path: config.inventory.clone(),
                source,
            })?;
        let rt = Arc::new(rt);
        Self::open_on(rt.clone(), config).inspect_err(|_| {
            // Dropping a runtime blocks, which panics on an async caller's thread (mayu opens
            // its engine inside its own runtime): let it go in the background instead.
            if let Ok(rt) = Arc::try_unwrap(rt) {
                rt.shutdown_background();
            }
        })
    }

    fn open_on(
        rt: Arc<tokio::runtime::Runtime>,
        config: &Config,
    ) -> Result<EtcdBackend, InventoryError> {
        let Some(cluster) = config.cluster.clone() else {
            return Err(InventoryError::Unavailable(
                "no cluster section in the configuration".into(),
            ));
        };
        let store = run(&rt, async move { Store::connect(&cluster).await })
            .map_err(|e| InventoryError::Unavailable(e.to_string()))?;
        let mirror = LocalBackend::open(&config.inventory, config.audit.git, &config.audit.author)?;
        // Tokens alike on every server. Unreachable: the folder's key (the cluster's once this
        // server has joined) until etcd answers ([`KeyJoin`]). A key etcd holds but this server
        // cannot use stops the start: tokens would differ from the other servers'.
        let key = KeyJoin {
            store: store.clone(),
            dir: config.inventory.clone(),
            joined: Arc::new(AtomicBool::new(false)),
            rekey: Arc::new(OnceLock::new()),
            failed: Arc::default(),
        };
        let joining = key.clone();
        let unread = match run(&rt, async move { Ok(joining.join().await) }) {
            Ok(Ok(_)) => None,
            Ok(Err(e @ InventoryError::Shared(_))) => return Err(e),
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = unread {
            tracing::warn!(error = %e, "cluster machine key not read; this folder's is used until etcd answers");
        }
        let name = store.name().to_string();
        let offset = name
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let quantities = config
            .profiles
            .iter()
            .filter_map(|p| p.quantity.map(|q| (p.name.clone(), q)))
            .collect();
        Ok(EtcdBackend {
            rt,
            store,
            name,
            offset,
            quantities,
            mirror: Arc::new(mirror),
            view: Arc::new(Mutex::new(View::default())),
            gate: Arc::new(tokio::sync::RwLock::new(())),
            snapshot: Mutex::new(0),
            link: watch::channel(StoreLink {
                up: true,
                detail: "connecting".into(),
            })
            .0,
            mirrored: watch::channel(0).0,
            info: ServerInfo {
                version: env!("CARGO_PKG_VERSION").into(),
                boot: config.http.boot.to_string(),
                api: config.http.api.to_string(),
                started: time::OffsetDateTime::now_utc(),
            },
            key,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The transaction for one change, or why it cannot be made.
    fn plan(
        &self,
        w: &Write,
        base: u64,
        reserved: &mut std::collections::HashSet<Seat>,
    ) -> Result<(Vec<Check>, Vec<Op>), InventoryError> {
        let view = self.view();
        let mut checks = vec![Check::MachineAt {
            id: w.id.clone(),
            revision: i64::try_from(base).unwrap_or(i64::MAX),
        }];
        let mut ops = Vec::new();
        let held = view.seat_of.get(&w.id).cloned();
        let wants = w
            .machine
            .as_ref()
            .and_then(|m| m.profile.as_deref())
            .and_then(|p| self.quantities.get(p).map(|q| (p.to_string(), *q)));
        let keeps = matches!((&held, &wants), (Some(s), Some((p, _))) if &s.profile == p);
        if let Some(seat) = held.as_ref().filter(|_| !keeps) {
            checks.push(Check::SeatHeldBy {
                seat: seat.clone(),
                id: w.id.clone(),
            });
            ops.push(Op::FreeSeat(seat.clone()));
        }
        if let (Some((profile, quantity)), false) = (&wants, keeps) {
            match view.free_seat_of(
                profile,
                *quantity,
                self.offset % (*quantity).max(1),
                reserved,
            ) {
                Some(seat) => {
                    reserved.insert(seat.clone());
                    checks.push(Check::SeatFree(seat.clone()));
                    ops.push(Op::TakeSeat {
                        seat,
                        id: w.id.clone(),
                    });
                }
                // An operator's forced assignment goes past the quota without a seat.
                None if w.change.what.contains(FORCED) => {}
                None => {
                    return Err(InventoryError::Conflict(format!(
                        "profile {profile} is full ({quantity} of {quantity} seats taken)"
                    )))
                }
            }
        }
        match &w.machine {
            Some(m) => ops.push(Op::PutMachine(Box::new(MachineRecord {
                machine: m.clone(),
                change: ChangeInfo::now(&w.change.actor, &w.change.what, &self.name),
            }))),
            None => ops.push(Op::DeleteMachine(w.id.clone())),
        }
        Ok((checks, ops))
    }

    /// After a lost compare: what etcd holds now for `id` and the seats, into the view.
    async fn refresh(
        store: &Store,
        view: &Mutex<View>,
        id: &MachineId,
    ) -> Result<(), ClusterError> {
        let current = store.machine(id).await?;
        let (seats, at) = store.seats().await?;
        let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
        match current {
            Some((record, r)) => {
                v.revs.insert(id.clone(), rev(r));
                v.records.insert(id.clone(), record.machine);
            }
            None => {
                v.revs.remove(id);
                v.records.remove(id);
            }
        }
        v.seats.clear();
        v.seat_of.clear();
        for (seat, holder) in seats {
            v.take_seat(seat, holder, rev(at));
        }
        Ok(())
    }
}

/// Runs `f` on the backend's runtime and waits for it from any thread (the engine's writer, a
/// request's blocking task, or start-up inside another runtime), with [`CALL_TIMEOUT`].
fn run<T, F>(rt: &tokio::runtime::Runtime, f: F) -> Result<T, ClusterError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, ClusterError>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let out = tokio::time::timeout(CALL_TIMEOUT, f)
            .await
            .unwrap_or_else(|_| {
                Err(ClusterError::Unavailable(
                    "etcd did not answer in time".into(),
                ))
            });
        let _ = tx.send(out);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(ClusterError::Unavailable("the etcd task stopped".into())))
}

/// One change's transaction; on success its revision, recorded in the view before the watch
/// may deliver it (the gate), so the watch knows it for this server's own.
async fn commit(
    store: Store,
    view: Arc<Mutex<View>>,
    gate: Arc<tokio::sync::RwLock<()>>,
    id: MachineId,
    decided_on: u64,
    checks: Vec<Check>,
    ops: Vec<Op>,
) -> Result<u64, ClusterError> {
    let _held = gate.read().await;
    let r = rev(store.txn(&checks, &ops).await?);
    let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
    v.own.insert(r);
    v.written = v.written.max(r);
    v.chain.insert(id.clone(), (decided_on, r));
    for op in &ops {
        match op {
            Op::PutMachine(rec) => {
                v.revs.insert(id.clone(), r);
                v.records.insert(id.clone(), rec.machine.clone());
            }
            Op::DeleteMachine(_) => {
                v.revs.remove(&id);
                v.records.remove(&id);
            }
            Op::TakeSeat { seat, id } => v.take_seat(seat.clone(), id.clone(), r),
            Op::FreeSeat(seat) => v.free_seat(seat, r),
        }
    }
    Ok(r)
}

impl Backend for EtcdBackend {
    fn load(&self) -> Result<(Vec<Machine>, Vec<LoadProblem>), InventoryError> {
        let store = self.store.clone();
        let snapshot = match run(&self.rt, async move { store.load().await }) {
            Ok(s) => s,
            // Started while etcd is out of reach: the mirror is the cache. Known machines are
            // served from it, new ones held; the watch loads etcd when it answers.
            Err(e) if e.is_unavailable() => {
                link_down(&self.link, &e.to_string());
                tracing::warn!(error = %e, "etcd unreachable at start; serving the local mirror");
                let (machines, problems) = self.mirror.load()?;
                let mut v = self.view();
                for m in &machines {
                    v.records.insert(m.id.clone(), m.clone());
                }
                return Ok((machines, problems));
            }
            Err(e) => return Err(unavailable(e)),
        };
        for p in &snapshot.problems {
            tracing::warn!(key = %p.key, reason = %p.reason, "etcd record skipped");
        }
        let at = rev(snapshot.revision);
        let mut machines = Vec::with_capacity(snapshot.machines.len());
        let mut mirror_writes = Vec::new();
        // The mirror held everything up to `r0` when this server stopped: the watch replays
        // each later change into it (if etcd still has them; else it reloads).
        let resume = std::fs::read_to_string(self.mirror.dir().join(REVISION_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|r0| *r0 > 0 && *r0 <= at);
        if let Some(r0) = resume {
            let mut v = self.view();
            for (record, r) in snapshot.machines {
                v.revs.insert(record.machine.id.clone(), rev(r));
                v.records
                    .insert(record.machine.id.clone(), record.machine.clone());
                machines.push(record.machine);
            }
            for (seat, id) in snapshot.seats {
                v.take_seat(seat, id, at);
            }
            drop(v);
            let _ = self.mirrored.send(r0);
            *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) =
                i64::try_from(r0).unwrap_or(snapshot.revision);
            return Ok((machines, Vec::new()));
        }
        let (on_disk, _) = self.mirror.load()?;
        let on_disk: HashMap<MachineId, Machine> =
            on_disk.into_iter().map(|m| (m.id.clone(), m)).collect();
        {
            let mut v = self.view();
            for (record, r) in snapshot.machines {
                let id = record.machine.id.clone();
                v.revs.insert(id.clone(), rev(r));
                v.records.insert(id.clone(), record.machine.clone());
                v.mirrored.insert(id.clone(), rev(r));
                if on_disk
                    .get(&id)
                    .is_none_or(|m| !same_record(m, &record.machine))
                {
                    mirror_writes.push(Write {
                        id: id.clone(),
                        machine: Some(record.machine.clone()),
                        change: mirror_change(&record.change, "synced from the cluster"),
                        base: 0,
                    });
                }
                machines.push(record.machine);
            }
            for id in on_disk.keys() {
                if !v.records.contains_key(id) {
                    mirror_writes.push(Write {
                        id: id.clone(),
                        machine: None,
                        change: Change {
                            actor: "mayu".into(),
                            what: "retired in the cluster".into(),
                        },
                        base: 0,
                    });
                }
            }
            for (seat, id) in snapshot.seats {
                v.take_seat(seat, id, at);
            }
            v.mirrored_up_to = at;
        }
        if !mirror_writes.is_empty() {
            self.mirror.write_group(&mirror_writes)?;
        }
        record_revision(self.mirror.dir(), at);
        let _ = self.mirrored.send(at);
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = snapshot.revision;
        Ok((machines, Vec::new()))
    }

    fn write_group(&self, writes: &[Write]) -> Result<(), InventoryError> {
        self.write_each(writes)
            .into_iter()
            .try_for_each(|r| r.map(drop))
    }

    fn write_each(&self, writes: &[Write]) -> Vec<Result<u64, InventoryError>> {
        // Plan every change first: a machine changed again in the same group waits for its
        // earlier change (a later wave); seats are reserved so two changes never pick one.
        let mut out: Vec<Option<Result<u64, InventoryError>>> =
            (0..writes.len()).map(|_| None).collect();
        let mut failed: HashMap<MachineId, String> = HashMap::new();
        let mut remaining: Vec<usize> = (0..writes.len()).collect();
        let mut down: Option<String> = None;
        while !remaining.is_empty() {
            let mut seen = std::collections::HashSet::new();
            let (wave, later): (Vec<usize>, Vec<usize>) = remaining
                .into_iter()
                .partition(|&i| seen.insert(writes[i].id.clone()));
            remaining = later;
            let mut reserved = std::collections::HashSet::new();
            let mut planned = Vec::new();
            for i in wave {
                let w = &writes[i];
                if let Some(why) = failed.get(&w.id) {
                    out[i] = Some(Err(InventoryError::Conflict(format!(
                        "decided on a change that was refused: {why}"
                    ))));
                    continue;
                }
                // Queued on top of this server's own last write of the machine.
                let base = match self.view().chain.get(&w.id) {
                    Some((decided_on, got)) if *decided_on == w.base => *got,
                    _ => w.base,
                };
                match self.plan(w, base, &mut reserved) {
                    Ok((checks, ops)) => planned.push((i, checks, ops)),
                    Err(e) => {
                        failed.insert(w.id.clone(), e.to_string());
                        out[i] = Some(Err(e));
                    }
                }
            }
            // The wave's transactions at once: independent machines, seats apart.
            let jobs: Vec<_> = planned
                .into_iter()
                .map(|(i, checks, ops)| {
                    let job = commit(
                        self.store.clone(),
                        self.view.clone(),
                        self.gate.clone(),
                        writes[i].id.clone(),
                        writes[i].base,
                        checks,
                        ops,
                    );
                    (i, job)
                })
                .collect();
            let (index, futures): (Vec<usize>, Vec<_>) = jobs.into_iter().unzip();
            let results = run(&self.rt, async move {
                Ok(futures_util::future::join_all(futures).await)
            })
            .unwrap_or_else(|e| {
                index
                    .iter()
                    .map(|_| Err(ClusterError::Unavailable(e.to_string())))
                    .collect()
            });
            for (i, result) in index.into_iter().zip(results) {
                let id = writes[i].id.clone();
                out[i] = Some(match result {
                    Ok(r) => Ok(r),
                    Err(conflict @ ClusterError::Conflict { .. }) => {
                        let (store, view, key) =
                            (self.store.clone(), self.view.clone(), id.clone());
                        if let Err(e) = run(&self.rt, async move {
                            EtcdBackend::refresh(&store, &view, &key).await
                        }) {
                            tracing::warn!(%id, error = %e, "could not reload a machine after a conflict");
                        }
                        failed.insert(id, conflict.to_string());
                        Err(InventoryError::Conflict(conflict.to_string()))
                    }
                    Err(e) if e.is_unavailable() => {
                        link_down(&self.link, &e.to_string());
                        down = Some(e.to_string());
                        Err(InventoryError::Unavailable(e.to_string()))
                    }
                    Err(e) => {
                        failed.insert(id, e.to_string());
                        Err(InventoryError::Conflict(e.to_string()))
                    }
                });
            }
            // Unreachable: the later waves would wait out the same timeout.
            if let Some(why) = &down {
                for i in std::mem::take(&mut remaining) {
                    out[i] = Some(Err(InventoryError::Unavailable(why.clone())));
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(InventoryError::Conflict("not written".into()))))
            .collect()
    }

    fn read_machine(&self, id: &MachineId) -> Result<Option<Machine>, InventoryError> {
        let (store, key) = (self.store.clone(), id.clone());
        match run(&self.rt, async move { store.machine(&key).await }) {
            Ok(found) => {
                let mut v = self.view();
                match found {
                    Some((record, r)) => {
                        v.revs.insert(id.clone(), rev(r));
                        v.records.insert(id.clone(), record.machine.clone());
                        Ok(Some(record.machine))
                    }
                    None => {
                        v.revs.remove(id);
                        v.records.remove(id);
                        Ok(None)
                    }
                }
            }
            // Unreachable: the last record this server saw is what etcd holds as far as it
            // knows (a new machine never written is none).
            Err(e) if e.is_unavailable() => Ok(self.view().records.get(id).cloned()),
            Err(e) => Err(InventoryError::Conflict(e.to_string())),
        }
    }

    fn revision_of(&self, id: &MachineId) -> u64 {
        self.view().revs.get(id).copied().unwrap_or(0)
    }

    fn revisions(&self) -> HashMap<MachineId, u64> {
        self.view().revs.clone()
    }

    fn history(&self, id: &MachineId) -> Result<Vec<HistoryEntry>, InventoryError> {
        self.mirror.history(id)
    }

    fn flush(&self) -> Result<(), InventoryError> {
        // Every change this server wrote is in the mirror (the watch brings it), then in git.
        let target = self.view().written;
        let mut rx = self.mirrored.subscribe();
        let wait = run(&self.rt, async move {
            tokio::time::timeout(MIRROR_WAIT, rx.wait_for(|m| *m >= target))
                .await
                .map(drop)
                .map_err(|_| ClusterError::Unavailable("the watch did not catch up".into()))
        });
        if let Err(e) = wait {
            return Err(InventoryError::Unavailable(format!(
                "the mirror is behind this server's own writes: {e}"
            )));
        }
        self.mirror.flush()
    }

    fn flush_within(&self, deadline: Duration) -> Result<(), InventoryError> {
        self.mirror.flush_within(deadline)
    }

    fn audit_health(&self) -> Option<watch::Receiver<AuditHealth>> {
        self.mirror.audit_health()
    }

    fn store_link(&self) -> Option<watch::Receiver<StoreLink>> {
        Some(self.link.subscribe())
    }

    fn follow(&self, sink: Box<dyn Fn(Remote) + Send + Sync>) {
        let from = *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) + 1;
        let to_mirror = match mirror_thread(self.mirror.clone(), self.mirrored.clone()) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "no mirror thread; other servers' changes are not followed");
                return;
            }
        };
        let follower = Follower {
            store: self.store.clone(),
            view: self.view.clone(),
            gate: self.gate.clone(),
            to_mirror,
            link: self.link.clone(),
            sink: Arc::from(sink),
        };
        self.rt.spawn(follower.run(from));
        self.rt.spawn(report_status(
            self.store.clone(),
            self.link.clone(),
            self.info.clone(),
            self.key.clone(),
        ));
    }

    fn follow_key(&self, rekey: Box<dyn Fn() + Send + Sync>) {
        let _ = self.key.rekey.set(rekey);
    }
}

/// Whether two records say the same (the token is derived, never stored).
fn same_record(a: &Machine, b: &Machine) -> bool {
    let strip = |m: &Machine| {
        let mut m = m.clone();
        m.token.clear();
        m.stall = None;
        m
    };
    strip(a) == strip(b)
}

/// The mirror's audit line for a change made on `change.server`.
fn mirror_change(change: &ChangeInfo, fallback: &str) -> Change {
    let what = if change.what.is_empty() {
        fallback.to_string()
    } else {
        change.what.clone()
    };
    Change {
        actor: change.actor.clone(),
        what: format!("{what} (on {})", change.server),
    }
}

/// The watch: every change below the prefix into the view, the mirror and the engine.
struct Follower {
    store: Store,
    view: Arc<Mutex<View>>,
    gate: Arc<tokio::sync::RwLock<()>>,
    to_mirror: std::sync::mpsc::Sender<ToMirror>,
    link: watch::Sender<StoreLink>,
    sink: Arc<dyn Fn(Remote) + Send + Sync>,
}

impl Follower {
    async fn run(self, mut from: Revision) {
        let mut backoff = Duration::from_millis(200);
        // Started from the mirror (etcd was unreachable): load etcd once it answers.
        while from <= 1 {
            match self.reload().await {
                Some(r) => from = r,
                None => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        loop {
            let mut w = match self.store.watch(from).await {
                Ok(w) => w,
                Err(ClusterError::Compacted { .. }) => {
                    from = self.reload().await.unwrap_or(from);
                    continue;
                }
                Err(e) => {
                    link_down(&self.link, &e.to_string());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            loop {
                match w.next().await {
                    Ok(ev) => {
                        // A broken watch resumes at this revision: its other events (one
                        // transaction's) come again and are taken once.
                        from = ev.revision();
                        self.handle(ev).await;
                    }
                    Err(ClusterError::Compacted { .. }) => {
                        from = self.reload().await.unwrap_or(from);
                        break;
                    }
                    Err(e) => {
                        link_down(&self.link, &e.to_string());
                        break;
                    }
                }
            }
        }
    }

    /// After a compaction: etcd's state now, every difference applied; the revision to
    /// watch from.
    async fn reload(&self) -> Option<Revision> {
        let snapshot = self.store.load().await.ok()?;
        let at = rev(snapshot.revision);
        let present: std::collections::HashSet<MachineId> = snapshot
            .machines
            .iter()
            .map(|(record, _)| record.machine.id.clone())
            .collect();
        {
            let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
            v.seats.clear();
            v.seat_of.clear();
            for (seat, id) in snapshot.seats {
                v.take_seat(seat, id, at);
            }
        }
        for (record, r) in snapshot.machines {
            self.machine(record, r).await;
        }
        // Retired elsewhere meanwhile.
        let gone: Vec<MachineId> = {
            let v = self.view.lock().unwrap_or_else(|p| p.into_inner());
            v.records
                .keys()
                .filter(|id| !present.contains(*id))
                .cloned()
                .collect()
        };
        for id in gone {
            self.handle(WatchEvent::MachineDeleted {
                id,
                revision: snapshot.revision,
            })
            .await;
        }
        Some(snapshot.revision + 1)
    }

    async fn handle(&self, ev: WatchEvent) {
        match ev {
            WatchEvent::Machine { record, revision } => self.machine(*record, revision).await,
            WatchEvent::MachineDeleted { id, revision } => {
                let r = rev(revision);
                let (own, fresh) = self.arrived(&id, r, None).await;
                let change = Change {
                    actor: "mayu".into(),
                    what: "retired".into(),
                };
                if fresh {
                    self.mirror_write(Write {
                        id: id.clone(),
                        machine: None,
                        change: change.clone(),
                        base: 0,
                    });
                }
                if !own {
                    (self.sink)(Remote {
                        id,
                        machine: None,
                        change,
                        revision: r,
                    });
                }
                self.mirrored_to(r);
            }
            WatchEvent::SeatTaken { seat, id, revision } => {
                let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
                v.take_seat(seat, id, rev(revision));
            }
            WatchEvent::SeatFreed { seat, revision } => {
                let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
                v.free_seat(&seat, rev(revision));
            }
            WatchEvent::ServerUp { .. } | WatchEvent::ServerDown { .. } => {}
            WatchEvent::Undecodable { problem, .. } => {
                tracing::warn!(key = %problem.key, reason = %problem.reason, "etcd record skipped");
            }
        }
    }

    /// A change of machine `id` at revision `r` (`machine`: its record, `None`: retired) into
    /// the view, once no transaction of this server is between its answer and its note. Whether
    /// it is this server's own write, and whether the mirror has yet to hold it.
    async fn arrived(&self, id: &MachineId, r: u64, machine: Option<&Machine>) -> (bool, bool) {
        let _gate = self.gate.write().await;
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        let own = v.own.remove(&r);
        let fresh = v.mirrored.get(id).is_none_or(|m| *m < r);
        if fresh {
            v.mirrored.insert(id.clone(), r);
        }
        match machine {
            Some(m) if v.revs.get(id).is_none_or(|x| *x < r) => {
                v.revs.insert(id.clone(), r);
                v.records.insert(id.clone(), m.clone());
            }
            None if fresh && v.revs.get(id).is_none_or(|x| *x <= r) => {
                v.revs.remove(id);
                v.records.remove(id);
            }
            _ => {}
        }
        (own, fresh)
    }

    async fn machine(&self, record: MachineRecord, revision: Revision) {
        let r = rev(revision);
        let id = record.machine.id.clone();
        let (own, fresh) = self.arrived(&id, r, Some(&record.machine)).await;
        let change = mirror_change(&record.change, "changed");
        // Live first (the engine, so every console and event stream), then the mirror's disk.
        if !own {
            (self.sink)(Remote {
                id: id.clone(),
                machine: Some(record.machine.clone()),
                change: Change {
                    actor: record.change.actor.clone(),
                    what: record.change.what.clone(),
                },
                revision: r,
            });
        }
        if fresh {
            self.mirror_write(Write {
                id,
                machine: Some(record.machine),
                change,
                base: 0,
            });
        }
        self.mirrored_to(r);
    }

    fn mirror_write(&self, w: Write) {
        let _ = self.to_mirror.send(ToMirror::Write(Box::new(w)));
    }

    /// Everything up to revision `r` is mirrored once what is queued before this is written.
    fn mirrored_to(&self, r: u64) {
        let _ = self.to_mirror.send(ToMirror::Mark(r));
    }
}

/// Notes in the mirror's folder that it holds everything up to revision `r`.
fn record_revision(dir: &std::path::Path, r: u64) {
    if let Err(e) = crate::atomic::write(&dir.join(REVISION_FILE), r.to_string().as_bytes(), 0o600)
    {
        tracing::warn!(error = %e, "the mirror's revision could not be recorded; a restart syncs instead");
    }
}

/// What the mirror thread is handed, in the watch's order.
enum ToMirror {
    Write(Box<Write>),
    /// every revision up to this one is in the mirror once the writes before it are.
    Mark(u64),
}

/// Writes the watch's changes into this server's folder, as many at once as are waiting (one
/// group: one sync, one journal append), off the watch: the engine never waits on this disk.
fn mirror_thread(
    mirror: Arc<LocalBackend>,
    mirrored: watch::Sender<u64>,
) -> std::io::Result<std::sync::mpsc::Sender<ToMirror>> {
    let (tx, rx) = std::sync::mpsc::channel::<ToMirror>();
    std::thread::Builder::new()
        .name("etcd-mirror".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let mut top = 0;
                let mut writes = Vec::new();
                for msg in batch {
                    match msg {
                        ToMirror::Write(w) => writes.push(*w),
                        ToMirror::Mark(r) => top = top.max(r),
                    }
                }
                if !writes.is_empty() {
                    if let Err(e) = mirror.write_group(&writes) {
                        tracing::error!(error = %e, changes = writes.len(), "the cluster's changes could not be mirrored here");
                    }
                }
                if top > 0 {
                    record_revision(mirror.dir(), top);
                    mirrored.send_modify(|m| *m = (*m).max(top));
                }
            }
        })?;
    Ok(tx)
}

/// Registers this server under `servers/<name>` (kept alive while it runs) and asks the
/// cluster for its members, leader and live servers every [`STATUS_EVERY`]: the link's detail
/// ("3 of 3 endpoints answer, 3 members, leader m2, servers site-a, site-b; this server
/// site-a"), or down with the reason. Joins the cluster's machine key once etcd answers, if
/// that was not done at the start.
async fn report_status(
    store: Store,
    link: watch::Sender<StoreLink>,
    info: ServerInfo,
    key: KeyJoin,
) {
    let mut every = tokio::time::interval(STATUS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Held for as long as this task runs (the backend's runtime): dropped, the key expires.
    let mut registered: Option<super::store::ServerLease> = None;
    loop {
        every.tick().await;
        if registered.is_none() {
            match store.register_server(&info).await {
                Ok(lease) => registered = Some(lease),
                Err(e) => {
                    tracing::debug!(error = %e, "this server's registration in etcd failed; retried")
                }
            }
        }
        let status = store.status().await;
        if !status.healthy() {
            let why = status
                .endpoints
                .iter()
                .filter_map(|e| e.health.as_ref().err().cloned())
                .next()
                .unwrap_or_else(|| "no member knows a leader".into());
            link_down(&link, &why);
            continue;
        }
        key.join_late().await;
        let answering = status.endpoints.iter().filter(|e| e.health.is_ok()).count();
        let members = store.members().await.unwrap_or_default();
        let leader = status
            .leader
            .and_then(|id| members.iter().find(|m| m.id == id))
            .map(|m| m.name.clone())
            .or_else(|| status.leader.map(|id| format!("{id:x}")))
            .unwrap_or_else(|| "none".into());
        let servers = store
            .servers()
            .await
            .map(|s| {
                s.into_iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let detail = format!(
            "etcd: {answering} of {} endpoints answer, {} members, leader {leader}, servers {servers}; this server {}",
            status.endpoints.len(),
            members.len(),
            store.name()
        );
        link.send_if_modified(|l| {
            let changed = !l.up || l.detail != detail;
            *l = StoreLink { up: true, detail };
            changed
        });
    }
}
