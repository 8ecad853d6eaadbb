//! The engine: the one writer of machine state. It owns the in-memory index (by id and by every
//! MAC), applies assignment rules with exact quotas, and announces each change on the bus. Its
//! lock covers memory only: a change is decided and indexed under it, then made durable in
//! groups by [`persist`]'s writer, and answered once it is.

mod enrol;
mod persist;
pub mod stalls;
mod steps;
pub mod tally;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::assign::{self, Decision};
use crate::config::Config;
use crate::events::{Bus, Event, EventKind};
use crate::inventory::{
    Backend, Change, HistoryEntry, InventoryError, LoadProblem, LocalBackend, Write,
};
use crate::lease::{Lease, ServiceProblem, ServiceState, ServiceStatus};
use crate::machine::{
    valid_hostname, AssignedBy, Facts, IdError, Mac, Machine, MachineId, Phase, Rack, Stall, State,
};
pub use enrol::{Enrolment, IgnoredClient};
pub use persist::Ticket;
pub use steps::{Timelines, Unregistered};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown machine `{0}`")]
    UnknownMachine(String),
    #[error("unknown profile `{name}`; known: {known}")]
    UnknownProfile { name: String, known: String },
    #[error(
        "profile `{name}` is full ({quantity} of {quantity}); assign with force to go past it"
    )]
    ProfileFull { name: String, quantity: u32 },
    #[error("{mac} is already machine `{id}`")]
    AlreadyKnown { mac: Mac, id: String },
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(
        "machine `{id}` has an inventory file mayu cannot read ({}); it keeps its place until an operator repairs or removes that file",
        .file.display()
    )]
    Unreadable {
        id: String,
        file: std::path::PathBuf,
    },
}

/// What iPXE (or discovery) tells us about a machine when it asks for its script.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub mac: Option<Mac>,
    pub uuid: Option<String>,
    pub serial: Option<String>,
    pub arch: Option<String>,
    pub ip: Option<Ipv4Addr>,
}

/// A change an operator (or the machine itself) asks for; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    pub hostname: Option<String>,
    pub state: Option<State>,
    pub ipmi_addr: Option<String>,
    pub provider_id: Option<String>,
    pub rack: Option<Rack>,
    pub notes: Option<String>,
    /// replaces the machine's metadata labels.
    pub metadata: Option<Vec<String>>,
    /// sets (or with an empty string clears) the etcd discovery token.
    pub etcd_token: Option<String>,
    /// merges reported software versions (an empty value removes one).
    pub versions: BTreeMap<String, String>,
    /// set (Some) or remove (None) template env overrides.
    pub overrides: BTreeMap<String, Option<serde_json::Value>>,
}

/// How full a profile is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProfileStatus {
    pub name: String,
    pub quantity: Option<u32>,
    pub assigned: u32,
    pub running: u32,
    pub tags: Vec<String>,
    pub image: String,
    /// assigned / quantity, when there is a quantity.
    pub fill: Option<f64>,
    pub is_default: bool,
}

/// Current state, for a late subscriber to start from.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub machines: Vec<Machine>,
    pub profiles: Vec<ProfileStatus>,
    pub waiting: u32,
    /// DHCP clients ignored as unknown, most recently seen first.
    pub ignored: Vec<IgnoredClient>,
    /// boot timelines of machines and of MACs that are no machine yet.
    pub timelines: Timelines,
}

/// A change decided and visible in memory; [`Written::wait`] or [`Written::durable`] returns
/// it once it is on disk (or the error that put it back).
pub struct Written {
    pub machine: Machine,
    /// the machine's revision: changes whenever its record does (not for phase times alone).
    pub rev: u64,
    ticket: Option<Ticket>,
}

impl Written {
    fn unchanged(machine: Machine, rev: u64) -> Written {
        Written {
            machine,
            rev,
            ticket: None,
        }
    }

    /// Blocks until durable (not on an async worker).
    pub fn wait(self) -> Result<Machine, EngineError> {
        if let Some(t) = self.ticket {
            t.wait()?;
        }
        Ok(self.machine)
    }

    pub async fn durable(self) -> Result<Machine, EngineError> {
        if let Some(t) = self.ticket {
            t.durable().await?;
        }
        Ok(self.machine)
    }
}

#[derive(Default)]
struct Index {
    machines: BTreeMap<MachineId, Machine>,
    by_mac: HashMap<Mac, MachineId>,
    /// the address each machine last registered from.
    by_ip: HashMap<Ipv4Addr, MachineId>,
    /// profile fill levels, kept in step with `machines` by `put`/`take`; seats of unreadable
    /// files are counted too.
    tally: tally::Tally,
    /// ids and MACs of machine files that could not be read: never registered over.
    unreadable: HashMap<MachineId, std::path::PathBuf>,
    unreadable_macs: HashMap<Mac, MachineId>,
    /// each machine's revision (see [`Written::rev`]), from one counter.
    revs: HashMap<MachineId, u64>,
    /// each machine's revision in a shared backend ([`Backend::revisions`]): what a change
    /// decided now is based on. Empty for the local backend.
    base: HashMap<MachineId, u64>,
    next_rev: u64,
    /// each machine's JSON as the API lists it, kept until the machine changes.
    json: HashMap<MachineId, Box<[u8]>>,
    /// the stalls announced on the bus and not yet announced as ended.
    stalls: HashMap<MachineId, Stall>,
    /// DHCP clients dnsmasq ignored (unknown MACs under `known_only`), for enrolment.
    ignored: BTreeMap<Mac, IgnoredClient>,
    /// each machine's boots since start (`crate::timeline`), memory only.
    timelines: HashMap<MachineId, crate::timeline::Timeline>,
    /// steps of MACs that are no machine yet, joined to the machine when it appears.
    unregistered: HashMap<Mac, crate::timeline::Timeline>,
}

impl Index {
    fn put(&mut self, mut m: Machine) {
        if stalls::moved_on(&m) {
            m.stall = None;
        }
        self.take(&m.id);
        for mac in &m.macs {
            self.by_mac.insert(*mac, m.id.clone());
        }
        if let Some(ip) = m.ip {
            self.by_ip.insert(ip, m.id.clone());
        }
        self.tally.count(&m, true);
        self.next_rev += 1;
        self.revs.insert(m.id.clone(), self.next_rev);
        self.json.remove(&m.id);
        self.machines.insert(m.id.clone(), m);
    }

    fn rev(&self, id: &MachineId) -> u64 {
        self.revs.get(id).copied().unwrap_or(0)
    }

    /// Records a phase time in place: no revision change, nothing to write.
    fn touch(&mut self, id: &MachineId, phase: Phase, at: OffsetDateTime) {
        if let Some(m) = self.machines.get_mut(id) {
            m.phases.set(phase, at);
            if stalls::moved_on(m) {
                m.stall = None;
            }
            self.json.remove(id);
        }
    }

    fn take(&mut self, id: &MachineId) -> Option<Machine> {
        let old = self.machines.remove(id)?;
        self.revs.remove(id);
        self.json.remove(id);
        for mac in &old.macs {
            if self.by_mac.get(mac) == Some(id) {
                self.by_mac.remove(mac);
            }
        }
        if let Some(ip) = old.ip {
            if self.by_ip.get(&ip) == Some(id) {
                self.by_ip.remove(&ip);
            }
        }
        self.tally.count(&old, false);
        Some(old)
    }

    /// Keeps the place of a machine whose file could not be read.
    fn hold(&mut self, p: &LoadProblem) {
        let Some(id) = p.held_id.clone().or_else(|| p.id.clone()) else {
            return;
        };
        for other in [p.id.clone(), p.held_id.clone()].into_iter().flatten() {
            self.unreadable.insert(other, p.file.clone());
        }
        for mac in &p.macs {
            self.unreadable_macs.insert(*mac, id.clone());
        }
        if let Some(profile) = &p.profile {
            self.tally.hold(profile);
        }
    }

    /// The unreadable file a registration would overwrite, if any.
    fn unreadable_for(
        &self,
        id: &MachineId,
        mac: Option<&Mac>,
    ) -> Option<(MachineId, std::path::PathBuf)> {
        let id = mac
            .and_then(|m| self.unreadable_macs.get(m))
            .filter(|_| !self.machines.contains_key(id))
            .unwrap_or(id);
        self.unreadable.get(id).map(|f| (id.clone(), f.clone()))
    }

    fn resolve(&self, key: &str) -> Option<&Machine> {
        if let Some(m) = key
            .parse::<MachineId>()
            .ok()
            .and_then(|id| self.machines.get(&id))
        {
            return Some(m);
        }
        let mac = key.parse::<Mac>().ok()?;
        self.by_mac.get(&mac).and_then(|id| self.machines.get(id))
    }
}

struct Inner {
    /// derives each machine's token (never stored in its file).
    key: crate::inventory::machine_key::CurrentKey,
    leases: Mutex<Vec<Lease>>,
    services: Mutex<BTreeMap<String, ServiceState>>,
    config: Config,
    backend: Arc<dyn Backend>,
    bus: Bus,
    index: Arc<Mutex<Index>>,
    problems: Vec<LoadProblem>,
    /// makes queued changes durable; dropped (so it finishes its queue) with the engine.
    writer: persist::Writer,
}

/// Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Opens the configured local inventory (files + git) and loads it.
    pub fn open(config: Config) -> Result<Engine, EngineError> {
        #[cfg(feature = "etcd")]
        if config.cluster.is_some() {
            let backend = crate::cluster::backend::EtcdBackend::open(&config)?;
            return Self::with_backend(config, Box::new(backend));
        }
        let backend =
            LocalBackend::open(&config.inventory, config.audit.git, &config.audit.author)?;
        Self::with_backend(config, Box::new(backend))
    }

    /// Opens the configured inventory to read only (no lock, no audit), beside a running mayu.
    pub fn open_read_only(config: Config) -> Result<Engine, EngineError> {
        let backend = LocalBackend::open_read_only(&config.inventory);
        Self::with_backend(config, Box::new(backend))
    }

    pub fn with_backend(config: Config, backend: Box<dyn Backend>) -> Result<Engine, EngineError> {
        let (mut machines, problems) = backend.load()?;
        let key = match crate::inventory::machine_key::MachineKey::open(&config.inventory) {
            Ok(k) => k,
            // A read-only view of a folder we may not write: tokens shown are not real.
            Err(e) if backend.read_only() => {
                tracing::warn!(error = %e, "no machine key; rendered tokens are placeholders");
                crate::inventory::machine_key::MachineKey::ephemeral()
            }
            Err(source) => {
                return Err(InventoryError::Io {
                    path: config.inventory.clone(),
                    source,
                }
                .into())
            }
        };
        for m in &mut machines {
            adopt_token(&key, m);
        }
        for p in &problems {
            tracing::warn!(file = %p.file.display(), error = %p.error, "machine file skipped");
        }
        let mut index = Index::default();
        for m in machines {
            index.put(m);
        }
        index.base = backend.revisions();
        for p in &problems {
            index.hold(p);
        }
        let backend: Arc<dyn Backend> = Arc::from(backend);
        let index = Arc::new(Mutex::new(index));
        let bus = Bus::new();
        let key = crate::inventory::machine_key::CurrentKey::new(key);
        let writer = persist::Writer::start(persist::Shared {
            backend: backend.clone(),
            index: index.clone(),
            bus: bus.clone(),
            key: key.clone(),
        })
        .map_err(|source| InventoryError::Io {
            path: config.inventory.clone(),
            source,
        })?;
        let engine = Engine {
            inner: Arc::new(Inner {
                key,
                leases: Mutex::new(Vec::new()),
                services: Mutex::new(BTreeMap::new()),
                config,
                backend,
                bus,
                index,
                problems,
                writer,
            }),
        };
        // A cluster's key joined late (etcd answered only after the start) takes over.
        let weak = Arc::downgrade(&engine.inner);
        engine.inner.backend.follow_key(Box::new(move || {
            if let Some(inner) = weak.upgrade() {
                Engine { inner }.rekey();
            }
        }));
        // Other servers' changes (a shared backend's watch) land like local ones.
        let weak = Arc::downgrade(&engine.inner);
        engine.inner.backend.follow(Box::new(move |r| {
            if let Some(inner) = weak.upgrade() {
                Engine { inner }.apply_remote(r);
            }
        }));
        Ok(engine)
    }

    /// Takes up the inventory folder's key as it is now (the cluster's, joined after the start):
    /// every machine's token is derived from it from here on. Tokens of the folder's own key
    /// stay accepted (it is kept as the previous key).
    fn rekey(&self) {
        let key = match crate::inventory::machine_key::MachineKey::open(
            &self.inner.config.inventory,
        ) {
            Ok(key) => key,
            Err(e) => {
                tracing::error!(error = %e, "the cluster's machine key was joined but cannot be read; tokens keep the old key");
                return;
            }
        };
        self.inner.key.replace(key.clone());
        let mut idx = self.index();
        let ids: Vec<MachineId> = idx.machines.keys().cloned().collect();
        for id in ids {
            if let Some(mut m) = idx.machines.get(&id).cloned() {
                m.token = key.token(id.as_str());
                // a new revision: what was rendered with the old token is rendered afresh
                idx.put(m);
            }
        }
        drop(idx);
        tracing::warn!("this server now derives machine tokens from the cluster's key");
    }

    /// A change another server made (from a shared backend's watch): into the index and onto
    /// the bus as if made here, unless this server already holds that revision or a later one.
    pub fn apply_remote(&self, r: crate::inventory::Remote) {
        let mut idx = self.index();
        if idx.base.get(&r.id).is_some_and(|b| *b >= r.revision) {
            return;
        }
        idx.base.insert(r.id.clone(), r.revision);
        let actor = r.change.actor;
        match r.machine {
            Some(mut m) => {
                adopt_token(&self.inner.key.get(), &mut m);
                let created = !idx.machines.contains_key(&m.id);
                idx.put(m.clone());
                self.adopt_steps(&mut idx, &m);
                self.inner
                    .bus
                    .publish(added_or_changed(created, &m, r.change.what, actor));
            }
            None => {
                if idx.take(&r.id).is_some() {
                    idx.timelines.remove(&r.id);
                    self.inner
                        .bus
                        .publish(EventKind::MachineRetired { id: r.id, actor });
                }
            }
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// Machine files that could not be loaded at start (left untouched on disk).
    pub fn load_problems(&self) -> &[LoadProblem] {
        &self.inner.problems
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.inner.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.index().machines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: &MachineId) -> Option<Machine> {
        self.index().machines.get(id).cloned()
    }

    /// Whether `presented` is machine `m`'s token: its own, one an older mayu gave it, or one
    /// from this inventory's key before it joined a cluster.
    pub fn accepts_token(&self, m: &Machine, presented: &str) -> bool {
        m.accepts_token(presented)
            || self
                .inner
                .key
                .get()
                .previous_accepts(m.id.as_str(), presented)
    }

    /// Finds a machine by id or by any of its MACs.
    pub fn find(&self, key: &str) -> Option<Machine> {
        self.index().resolve(key).cloned()
    }

    /// A machine as Mayu's clients name it: by id, MAC or serial (any case), else by UUID.
    pub fn find_host(&self, key: &str) -> Option<Machine> {
        if key.is_empty() {
            return None;
        }
        self.find(key)
            .or_else(|| self.find(&key.to_lowercase()))
            .or_else(|| {
                let idx = self.index();
                let found = idx
                    .machines
                    .values()
                    .find(|m| {
                        m.serial
                            .as_deref()
                            .is_some_and(|s| s.eq_ignore_ascii_case(key))
                    })
                    .or_else(|| {
                        idx.machines.values().find(|m| {
                            m.uuid
                                .as_deref()
                                .is_some_and(|u| u.eq_ignore_ascii_case(key))
                        })
                    });
                found.cloned()
            })
    }

    pub fn by_mac(&self, mac: &Mac) -> Option<Machine> {
        let idx = self.index();
        idx.by_mac
            .get(mac)
            .and_then(|id| idx.machines.get(id))
            .cloned()
    }

    /// The machine behind a client address: the one holding its DHCP lease, else the one that
    /// last registered from it. Index lookups only; nothing is cloned but the id.
    pub fn machine_at(&self, ip: Ipv4Addr) -> Option<MachineId> {
        let by_lease = {
            let leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
            leases.iter().find(|l| l.ip == ip).map(|l| l.mac)
        };
        let idx = self.index();
        by_lease
            .and_then(|mac| idx.by_mac.get(&mac))
            .or_else(|| idx.by_ip.get(&ip))
            .cloned()
    }

    /// The machines `keep` selects, as one JSON array the way the API lists them (tokens are
    /// never serialised). Each machine's JSON is kept until it changes, so listing 10,000
    /// machines is mostly copying bytes, not cloning or serialising records.
    pub fn list_json(&self, keep: impl Fn(&Machine) -> bool) -> Vec<u8> {
        let mut guard = self.index();
        let idx = &mut *guard;
        let mut out = Vec::with_capacity(idx.machines.len() * 640 + 2);
        out.push(b'[');
        for (id, m) in &idx.machines {
            if !keep(m) {
                continue;
            }
            let json = idx.json.entry(id.clone()).or_insert_with(|| {
                serde_json::to_vec(m)
                    .unwrap_or_else(|_| b"null".to_vec())
                    .into_boxed_slice()
            });
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(json);
        }
        out.push(b']');
        out
    }

    pub fn list(&self) -> Vec<Machine> {
        self.index().machines.values().cloned().collect()
    }

    /// Ids close to `key`, for "did you mean" hints.
    pub fn suggest(&self, key: &str) -> Vec<String> {
        let key = key.to_lowercase();
        let idx = self.index();
        let mut scored: Vec<(usize, &str)> = idx
            .machines
            .keys()
            .map(|id| (edit_distance(&key, id.as_str()), id.as_str()))
            .filter(|(d, id)| *d <= 3 || id.contains(&key) || key.contains(id))
            .collect();
        scored.sort();
        scored
            .into_iter()
            .take(3)
            .map(|(_, s)| s.to_string())
            .collect()
    }

    pub fn profiles(&self) -> Vec<ProfileStatus> {
        tally::profiles(&self.inner.config, &self.index().tally)
    }

    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.inner.config, &self.index())
    }

    /// The current state plus a receiver for every event after it, with nothing lost between.
    pub fn subscribe(&self) -> (Snapshot, broadcast::Receiver<Arc<Event>>) {
        // Events about machines are published under the index lock, so holding it here
        // makes the snapshot and the first received event line up exactly.
        let idx = self.index();
        let rx = self.inner.bus.subscribe();
        (snapshot_of(&self.inner.config, &idx), rx)
    }

    /// Finds or registers the machine iPXE describes, records that it reached `phase`, and runs
    /// the assignment rules where they may act.
    pub fn register(&self, reg: Registration, phase: Phase) -> Result<Machine, EngineError> {
        self.begin_register(reg, phase, false)?.wait()
    }

    /// [`Engine::register`] without waiting for the disk. `serving_profile`: the caller hands
    /// a configured machine its profile's script now, so it is installing — one change, one
    /// write, not two.
    pub fn begin_register(
        &self,
        reg: Registration,
        phase: Phase,
        serving_profile: bool,
    ) -> Result<Written, EngineError> {
        crate::text::check_registration(&reg)?;
        let derived =
            MachineId::derive(reg.serial.as_deref(), reg.uuid.as_deref(), reg.mac.as_ref())?;
        let now = OffsetDateTime::now_utc();
        let mut idx = self.index();
        if let Some((id, file)) = idx.unreadable_for(&derived, reg.mac.as_ref()) {
            return Err(EngineError::Unreadable {
                id: id.to_string(),
                file,
            });
        }
        // One clone of the stored machine: the request's changes go to it and it is compared
        // with the stored one in place.
        let existing = idx.machines.get(&derived).or_else(|| {
            reg.mac
                .as_ref()
                .and_then(|mac| idx.by_mac.get(mac))
                .and_then(|id| idx.machines.get(id))
        });
        let created = existing.is_none();
        let mut m = match existing {
            Some(e) => e.clone(),
            None => Machine::new(
                derived.clone(),
                self.inner.key.get().token(derived.as_str()),
                now,
            ),
        };
        let mut what = Vec::new();
        if created {
            what.push("registered".to_string());
        }
        if let Some(mac) = reg.mac {
            if !m.macs.contains(&mac) {
                m.macs.push(mac);
                if !created {
                    what.push(format!("new mac {mac}"));
                }
            }
        }
        fill(&mut m.uuid, reg.uuid.filter(|u| !u.is_empty()));
        fill(&mut m.serial, reg.serial.filter(|s| !s.is_empty()));
        fill(&mut m.arch, reg.arch.filter(|s| !s.is_empty()));
        if reg.ip.is_some() && m.ip != reg.ip {
            m.ip = reg.ip;
        }
        m.phases.set(phase, now);
        if stalls::moved_on(&m) {
            m.stall = None;
        }
        if assign::rules_may_move(&self.inner.config, &m) {
            if let Some(w) = self.apply_rules(&idx, &mut m) {
                what.push(w);
            }
        }
        if serving_profile && m.state == State::Configured {
            m.state = State::Installing;
            what.push("installing".into());
        }
        // Several servers (cluster:): which one saw the machine last. Written only when it
        // moves to another server, so a machine that keeps booting here costs nothing.
        if let Some(c) = &self.inner.config.cluster {
            if m.seen_by.as_deref() != Some(c.name.as_str()) {
                if !created {
                    what.push(format!("seen by {}", c.name));
                }
                m.seen_by = Some(c.name.clone());
            }
        }
        let meaningful = created || idx.machines.get(&m.id).is_none_or(|b| differs(b, &mut m));
        let actor = m.id.to_string();
        if meaningful {
            let change = Change {
                actor: actor.clone(),
                what: if what.is_empty() {
                    "seen".into()
                } else {
                    what.join(", ")
                },
            };
            idx.put(m.clone());
            self.adopt_steps(&mut idx, &m);
            let ticket = self.queue(&idx, &m, &change);
            let kind = added_or_changed(created, &m, change.what, actor);
            self.inner.bus.publish(kind);
            Ok(Written {
                rev: idx.rev(&m.id),
                machine: m,
                ticket: Some(ticket),
            })
        } else {
            // Nothing but a phase time: kept in memory, written with the next real change.
            idx.touch(&m.id, phase, now);
            let rev = idx.rev(&m.id);
            Ok(Written::unchanged(m, rev))
        }
    }

    /// Queues `m` to be written; call with the index lock held (the queue keeps its order).
    fn queue(&self, idx: &Index, m: &Machine, change: &Change) -> Ticket {
        self.inner.writer.enqueue(Write {
            id: m.id.clone(),
            machine: Some(m.clone()),
            change: change.clone(),
            base: idx.base.get(&m.id).copied().unwrap_or(0),
        })
    }

    /// Runs the rules on `m`; returns what changed, if anything.
    fn apply_rules(&self, idx: &Index, m: &mut Machine) -> Option<String> {
        match assign::decide(&self.inner.config, &idx.tally.assigned, m) {
            Decision::Profile(p) if m.profile.as_deref() != Some(p.as_str()) => {
                // A machine parked in the default (discovery) profile is still waiting for its
                // real place; only a real profile makes it configured.
                let parked = self.inner.config.default_profile.as_deref() == Some(p.as_str());
                m.profile = Some(p.clone());
                m.installed = false;
                m.assigned_by = Some(AssignedBy::Rule);
                m.state = if parked {
                    State::Waiting
                } else {
                    State::Configured
                };
                Some(format!("assigned to {p} by rule"))
            }
            Decision::Profile(_) => None,
            Decision::Hold => {
                if m.profile.is_some() {
                    m.profile = None;
                    m.assigned_by = None;
                    m.state = State::Waiting;
                    Some("held for an operator".into())
                } else {
                    None
                }
            }
        }
    }

    /// Applies `f` to one machine under the lock; persists, audits and announces the result
    /// if it changed anything, and waits until that is durable. `f` returns the change's
    /// description.
    fn mutate<F>(&self, key: &str, actor: &str, f: F) -> Result<Machine, EngineError>
    where
        F: FnOnce(&Index, &mut Machine) -> Result<String, EngineError>,
    {
        self.begin_mutate(key, actor, f)?.wait()
    }

    /// [`Engine::mutate`] without waiting for the disk.
    fn begin_mutate<F>(&self, key: &str, actor: &str, f: F) -> Result<Written, EngineError>
    where
        F: FnOnce(&Index, &mut Machine) -> Result<String, EngineError>,
    {
        let mut idx = self.index();
        let mut m = idx
            .resolve(key)
            .cloned()
            .ok_or_else(|| EngineError::UnknownMachine(key.to_string()))?;
        let what = f(&idx, &mut m)?;
        if !idx.machines.get(&m.id).is_none_or(|b| differs(b, &mut m)) {
            // Phase times alone are kept in memory.
            let rev = idx.rev(&m.id);
            if let Some(slot) = idx.machines.get_mut(&m.id) {
                slot.phases = m.phases.clone();
                if stalls::moved_on(slot) {
                    slot.stall = None;
                }
            }
            idx.json.remove(&m.id);
            return Ok(Written::unchanged(m, rev));
        }
        let change = Change {
            actor: actor.to_string(),
            what: what.clone(),
        };
        idx.put(m.clone());
        let ticket = self.queue(&idx, &m, &change);
        self.inner.bus.publish(EventKind::MachineChanged {
            machine: Box::new(m.redacted()),
            change: what,
            actor: actor.to_string(),
        });
        Ok(Written {
            rev: idx.rev(&m.id),
            machine: m,
            ticket: Some(ticket),
        })
    }

    /// An operator puts a machine in a profile and pins it there. Past a full quota only with
    /// `force`.
    pub fn assign(
        &self,
        key: &str,
        profile: &str,
        actor: &str,
        force: bool,
    ) -> Result<Machine, EngineError> {
        let quantity = self.profile_named(profile)?.quantity;
        self.mutate(key, actor, |idx, m| {
            let already = m.profile.as_deref() == Some(profile);
            if let Some(q) = quantity {
                let held = idx.tally.assigned.get(profile).copied().unwrap_or(0);
                if !already && held >= q && !force {
                    return Err(EngineError::ProfileFull {
                        name: profile.to_string(),
                        quantity: q,
                    });
                }
            }
            if !already {
                m.state = State::Configured;
                m.installed = false;
            }
            m.profile = Some(profile.to_string());
            m.assigned_by = Some(AssignedBy::Operator(actor.to_string()));
            m.pinned = true;
            Ok(if force {
                format!("assigned to {profile} (forced)")
            } else {
                format!("assigned to {profile}")
            })
        })
    }

    /// The configured profile `name`, or an error naming those there are.
    fn profile_named(&self, name: &str) -> Result<&crate::config::Profile, EngineError> {
        let config = &self.inner.config;
        config
            .profile(name)
            .ok_or_else(|| EngineError::UnknownProfile {
                name: name.to_string(),
                known: config
                    .profiles
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Takes a machine out of its profile and holds it for an operator (rules leave it alone).
    pub fn unassign(&self, key: &str, actor: &str) -> Result<Machine, EngineError> {
        self.mutate(key, actor, |_, m| {
            let was = m.profile.take();
            m.installed = false;
            m.assigned_by = None;
            m.pinned = true;
            m.state = State::Waiting;
            Ok(match was {
                Some(p) => format!("unassigned from {p}"),
                None => "held".into(),
            })
        })
    }

    /// Lets the rules place a held machine again.
    pub fn release(&self, key: &str, actor: &str) -> Result<Machine, EngineError> {
        self.mutate(key, actor, |idx, m| {
            m.pinned = false;
            let w = self.apply_rules(idx, m);
            Ok(w.unwrap_or_else(|| "released to the rules".into()))
        })
    }

    pub fn request_reinstall(&self, key: &str, actor: &str) -> Result<Machine, EngineError> {
        self.mutate(key, actor, |_, m| {
            if m.profile.is_none() {
                return Err(EngineError::Invalid(format!(
                    "{} has no profile to reinstall; assign one first",
                    m.id
                )));
            }
            m.reinstall = true;
            m.installed = false;
            m.state = State::Configured;
            Ok("reinstall requested".into())
        })
    }

    pub fn boot_complete(&self, key: &str, actor: &str) -> Result<Machine, EngineError> {
        self.begin_boot_complete(key, actor)?.wait()
    }

    /// [`Engine::boot_complete`] without waiting for the disk.
    pub fn begin_boot_complete(&self, key: &str, actor: &str) -> Result<Written, EngineError> {
        self.begin_boot_complete_with(key, actor, BTreeMap::new())
    }

    /// [`Engine::begin_boot_complete`], recording the software versions the machine reported
    /// (Mayu's `boot-complete --update-versions`) in the same change.
    pub fn begin_boot_complete_with(
        &self,
        key: &str,
        actor: &str,
        versions: BTreeMap<String, String>,
    ) -> Result<Written, EngineError> {
        let versions = crate::text::check_edit(Edit {
            versions,
            ..Edit::default()
        })?
        .versions;
        let now = OffsetDateTime::now_utc();
        let config = &self.inner.config;
        let mut from_disk = false;
        let written = self.begin_mutate(key, actor, |_, m| {
            // Only the machine's own report says what booted; an operator marking it proves nothing.
            from_disk = actor == m.id.as_str() && booted_from_disk(config, m);
            m.state = State::Running;
            m.reinstall = false;
            if from_disk {
                m.phases.set(Phase::DiskBoot, now);
            }
            m.phases.set(Phase::BootComplete, now);
            if versions.is_empty() {
                return Ok("boot complete".into());
            }
            let reported: Vec<String> = versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
            m.versions.extend(versions.clone());
            Ok(format!("boot complete ({})", reported.join(", ")))
        })?;
        let m = &written.machine;
        // Through `boot_step`, so a machine that was already running (no change to commit)
        // still has its phase times updated.
        if from_disk {
            self.boot_step(
                Some(&m.id),
                Phase::DiskBoot,
                "and reported in".into(),
                None,
                None,
            );
        }
        self.boot_step(
            Some(&m.id),
            Phase::BootComplete,
            "reported".into(),
            None,
            None,
        );
        Ok(written)
    }

    /// The installer wrote the profile's system to the machine's disk. Its next network boot
    /// is handed `sanboot` of that disk (for `boot_from_disk` profiles), not the installer again.
    pub fn installed_to_disk(&self, key: &str, actor: &str) -> Result<Machine, EngineError> {
        self.begin_installed_to_disk(key, actor)?.wait()
    }

    /// [`Engine::installed_to_disk`] without waiting for the disk.
    pub fn begin_installed_to_disk(&self, key: &str, actor: &str) -> Result<Written, EngineError> {
        self.begin_mutate(key, actor, |_, m| {
            if m.profile.is_none() {
                return Err(EngineError::Invalid(format!(
                    "{} has no profile, so nothing was installed",
                    m.id
                )));
            }
            m.installed = true;
            m.reinstall = false;
            if m.state == State::Configured {
                m.state = State::Installing;
            }
            Ok("installed to disk".into())
        })
    }

    /// The machine is booting its profile (its install script or config was served).
    pub fn mark_installing(&self, id: &MachineId) -> Result<Machine, EngineError> {
        self.begin_mark_installing(id)?.wait()
    }

    /// [`Engine::mark_installing`] without waiting for the disk; writes only when the machine
    /// was configured.
    pub fn begin_mark_installing(&self, id: &MachineId) -> Result<Written, EngineError> {
        let actor = id.to_string();
        self.begin_mutate(id.as_str(), &actor, |_, m| {
            if m.state == State::Configured {
                m.state = State::Installing;
            }
            Ok("installing".into())
        })
    }

    /// Records that a machine reached a boot phase (kept in memory; written with its next
    /// change) and announces the step.
    pub fn boot_step(
        &self,
        id: Option<&MachineId>,
        phase: Phase,
        detail: String,
        bytes: Option<u64>,
        duration_ms: Option<u64>,
    ) {
        let mut idx = self.index();
        if let Some(id) = id {
            let now = OffsetDateTime::now_utc();
            idx.touch(id, phase, now);
            self.boot_port_step(&mut idx, id, phase, &detail, now);
        }
        let profile = id
            .and_then(|id| idx.machines.get(id))
            .and_then(|m| m.profile.clone());
        self.inner.bus.publish(EventKind::BootStep {
            id: id.cloned(),
            phase,
            detail,
            bytes,
            duration_ms,
            profile,
        });
    }

    /// Marks the machines that have stalled and ends the stalls of those that moved on,
    /// announcing each on the bus (the watcher calls this every [`stalls::SCAN_EVERY`]).
    pub fn scan_stalls(&self, now: OffsetDateTime) {
        let config = &self.inner.config;
        let mut guard = self.index();
        let idx = &mut *guard;
        let mut ended = Vec::new();
        for (id, announced) in &idx.stalls {
            let now_in = match idx.machines.get_mut(id) {
                // retired: its stall ends with it
                None => None,
                Some(m) => {
                    if stalls::moved_on(m) {
                        m.stall = None;
                        idx.json.remove(id);
                    }
                    if m.stall == Some(*announced) {
                        continue;
                    }
                    m.phases.current().map(|(p, _)| p)
                }
            };
            ended.push((id.clone(), *announced, now_in));
        }
        for (id, stall, now_in) in ended {
            idx.stalls.remove(&id);
            let profile = idx.machines.get(&id).and_then(|m| m.profile.clone());
            self.inner.bus.publish(EventKind::StallEnded {
                id,
                phase: stall.phase,
                stalled_secs: (now - stall.since).whole_seconds().max(0).unsigned_abs(),
                now_in,
                profile,
            });
        }
        for (id, m) in idx.machines.iter_mut() {
            if m.stall.is_some() {
                continue;
            }
            let after = stalls::limit(config, m.profile.as_deref());
            if let Some(stall) = stalls::due(m, now, after) {
                m.stall = Some(stall);
                idx.json.remove(id);
                idx.stalls.insert(id.clone(), stall);
                self.inner.bus.publish(EventKind::Stalled {
                    id: id.clone(),
                    stall,
                    profile: m.profile.clone(),
                });
            }
        }
    }

    /// How many machines are stalled now, by profile (`None`: no profile).
    pub fn stalled_by_profile(&self) -> BTreeMap<Option<String>, usize> {
        let idx = self.index();
        let mut out = BTreeMap::new();
        for id in idx.stalls.keys() {
            let profile = idx.machines.get(id).and_then(|m| m.profile.clone());
            *out.entry(profile).or_default() += 1;
        }
        out
    }

    /// Announces a step of a machine whose phase time the same request already recorded
    /// (`begin_register`): no lookup, the lock only to add it to the machine's timeline. The
    /// same script again at once (a held machine polling every few seconds) is counted in the
    /// timeline, not announced again: one log line, not one per poll.
    pub fn announce_step(&self, m: &Machine, phase: Phase, detail: String) {
        let mut idx = self.index();
        let count = self.boot_port_step(&mut idx, &m.id, phase, &detail, OffsetDateTime::now_utc());
        if count > 1 {
            return;
        }
        self.inner.bus.publish(EventKind::BootStep {
            id: Some(m.id.clone()),
            phase,
            detail,
            bytes: None,
            duration_ms: None,
            profile: m.profile.clone(),
        });
    }

    pub fn edit(&self, key: &str, actor: &str, edit: Edit) -> Result<Machine, EngineError> {
        let edit = crate::text::check_edit(edit)?;
        self.mutate(key, actor, |_, m| {
            let mut what = Vec::new();
            if let Some(h) = edit.hostname {
                if !valid_hostname(&h) {
                    return Err(EngineError::Invalid(format!(
                        "`{h}` is not a hostname; use letters, digits and `-`, dot-separated"
                    )));
                }
                what.push(format!("hostname {h}"));
                m.hostname = Some(h);
            }
            if let Some(s) = edit.state {
                what.push(format!("state {s}"));
                m.state = s;
            }
            if let Some(a) = edit.ipmi_addr {
                what.push(format!("ipmi address {a}"));
                m.ipmi_addr = Some(a);
            }
            if let Some(p) = edit.provider_id {
                what.push(format!("provider id {p}"));
                m.provider_id = Some(p);
            }
            if let Some(r) = edit.rack {
                what.push(match r.unit {
                    Some(u) => format!("rack {} unit {u}", r.rack),
                    None => format!("rack {}", r.rack),
                });
                m.rack = Some(r);
            }
            if let Some(n) = edit.notes {
                what.push("notes".into());
                m.notes = n;
            }
            if let Some(md) = edit.metadata {
                what.push(format!("metadata {}", md.join(",")));
                m.metadata = md;
            }
            if let Some(t) = edit.etcd_token {
                if t.is_empty() {
                    what.push("etcd token removed".into());
                    m.etcd_token = None;
                } else {
                    // a secret of the cluster: named, never written into the audit message.
                    what.push("etcd token".into());
                    m.etcd_token = Some(t);
                }
            }
            for (k, v) in edit.versions {
                if v.is_empty() {
                    m.versions.remove(&k);
                } else {
                    what.push(format!("{k} {v}"));
                    m.versions.insert(k, v);
                }
            }
            // The pin becomes part of the asset URL and a folder name: a version name only.
            if let Some(Some(v)) = edit.overrides.get(crate::images::VERSION_OVERRIDE) {
                if !v.as_str().is_some_and(crate::images::plain_segment) {
                    return Err(EngineError::Invalid(format!(
                        "override {} must be a version name such as \"4081.2.0\"; got {v}",
                        crate::images::VERSION_OVERRIDE
                    )));
                }
            }
            for (k, v) in edit.overrides {
                match v {
                    Some(v) => {
                        what.push(format!("override {k}={v}"));
                        m.overrides.insert(k, v);
                    }
                    None => {
                        what.push(format!("override {k} removed"));
                        m.overrides.remove(&k);
                    }
                }
            }
            if what.is_empty() {
                return Err(EngineError::Invalid("nothing to change".into()));
            }
            Ok(what.join(", "))
        })
    }

    /// Discovery reports hardware facts; rules may now place the machine by selector.
    pub fn set_facts(&self, key: &str, facts: Facts) -> Result<Machine, EngineError> {
        self.begin_set_facts(key, facts)?.wait()
    }

    /// [`Engine::set_facts`] without waiting for the disk.
    pub fn begin_set_facts(&self, key: &str, facts: Facts) -> Result<Written, EngineError> {
        let actor = self
            .find(key)
            .map(|m| m.id.to_string())
            .ok_or_else(|| EngineError::UnknownMachine(key.to_string()))?;
        self.begin_mutate(key, &actor, |idx, m| {
            m.facts = facts;
            for nic in &m.facts.nics {
                if let Some(mac) = nic.mac {
                    if !m.macs.contains(&mac) {
                        m.macs.push(mac);
                    }
                }
            }
            let mut what = "facts reported".to_string();
            if assign::rules_may_move(&self.inner.config, m) {
                if let Some(w) = self.apply_rules(idx, m) {
                    what = format!("{what}, {w}");
                }
            }
            Ok(what)
        })
    }

    /// Removes a machine from the inventory (its history stays in git).
    pub fn retire(&self, key: &str, actor: &str) -> Result<MachineId, EngineError> {
        let mut idx = self.index();
        let id = idx
            .resolve(key)
            .map(|m| m.id.clone())
            .ok_or_else(|| EngineError::UnknownMachine(key.to_string()))?;
        idx.take(&id);
        idx.timelines.remove(&id);
        let ticket = self.inner.writer.enqueue(Write {
            base: idx.base.get(&id).copied().unwrap_or(0),
            id: id.clone(),
            machine: None,
            change: Change {
                actor: actor.to_string(),
                what: "retired".into(),
            },
        });
        self.inner.bus.publish(EventKind::MachineRetired {
            id: id.clone(),
            actor: actor.to_string(),
        });
        drop(idx);
        ticket.wait()?;
        Ok(id)
    }

    /// Adds or replaces a whole machine record (imports).
    pub fn import(&self, mut m: Machine, actor: &str, what: &str) -> Result<(), EngineError> {
        m.token = self.inner.key.get().token(m.id.as_str());
        let mut idx = self.index();
        idx.put(m.clone());
        self.adopt_steps(&mut idx, &m);
        let ticket = self.queue(
            &idx,
            &m,
            &Change {
                actor: actor.to_string(),
                what: what.to_string(),
            },
        );
        self.inner.bus.publish(EventKind::MachineAdded {
            machine: Box::new(m.redacted()),
            actor: actor.to_string(),
        });
        drop(idx);
        ticket.wait()
    }

    pub fn history(&self, key: &str) -> Result<Vec<HistoryEntry>, EngineError> {
        let id = self
            .find(key)
            .map(|m| m.id)
            .or_else(|| key.parse::<MachineId>().ok())
            .ok_or_else(|| EngineError::UnknownMachine(key.to_string()))?;
        Ok(self.inner.backend.history(&id)?)
    }

    /// Replaces the lease table (linking each lease to its machine by MAC) and announces it.
    pub fn set_leases(&self, mut leases: Vec<Lease>) {
        {
            let idx = self.index();
            for l in &mut leases {
                l.machine = idx.by_mac.get(&l.mac).cloned();
            }
        }
        let count = leases.len();
        let mut table = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        // dnsmasq rewrites its lease file on every DHCP message; only a real change is news.
        if *table == leases {
            return;
        }
        *table = leases;
        drop(table);
        self.inner.bus.publish(EventKind::Leases { count });
    }

    /// The lease table, each lease linked to the machine that now has its MAC.
    pub fn leases(&self) -> Vec<Lease> {
        let mut leases = self
            .inner
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let idx = self.index();
        for l in &mut leases {
            l.machine = idx.by_mac.get(&l.mac).cloned();
        }
        leases
    }

    /// Records a service's state and announces it.
    pub fn set_service(&self, name: &str, status: ServiceStatus, restarts: u32, detail: &str) {
        self.set_service_problem(name, status, restarts, detail, None);
    }

    /// [`Engine::set_service`] with the operator-readable reason it is not (fully) working.
    pub fn set_service_problem(
        &self,
        name: &str,
        status: ServiceStatus,
        restarts: u32,
        detail: &str,
        problem: Option<ServiceProblem>,
    ) {
        let state = ServiceState {
            name: name.to_string(),
            status,
            restarts,
            detail: detail.to_string(),
            since: OffsetDateTime::now_utc(),
            problem: problem.clone(),
        };
        self.inner
            .services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), state);
        self.inner.bus.publish(EventKind::Service {
            name: name.to_string(),
            status,
            restarts,
            detail: detail.to_string(),
            problem,
        });
    }

    pub fn services(&self) -> Vec<ServiceState> {
        self.inner
            .services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Tells the operator: one log record (file, stdout when headless) and one `log` event on
    /// this engine's bus (console, event stream), never two of either.
    pub fn say(&self, level: crate::events::LogLevel, message: String) {
        use crate::events::LogLevel;
        match level {
            LogLevel::Info => tracing::info!(target: "mayu::events", "{message}"),
            LogLevel::Warn => tracing::warn!(target: "mayu::events", "{message}"),
            LogLevel::Error => tracing::error!(target: "mayu::events", "{message}"),
        }
        self.inner.bus.publish(EventKind::Log { level, message });
    }

    /// Waits until every change so far is in the audit trail.
    pub fn flush(&self) -> Result<(), EngineError> {
        Ok(self.inner.backend.flush()?)
    }

    /// [`Engine::flush`] with a deadline, for shutdown: past it, the error says how many changes
    /// are still pending (they are safe in the audit journal and committed at the next start).
    pub fn flush_within(&self, deadline: std::time::Duration) -> Result<(), EngineError> {
        Ok(self.inner.backend.flush_within(deadline)?)
    }

    /// The link to a shared inventory's store (`None` for the local inventory).
    pub fn store_link(&self) -> Option<tokio::sync::watch::Receiver<crate::inventory::StoreLink>> {
        self.inner.backend.store_link()
    }

    /// The git audit's state as it changes; `None` without an audit.
    pub fn audit_health(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<crate::inventory::AuditHealth>> {
        self.inner.backend.audit_health()
    }
}

/// The event for a machine written: added (new to this server) or changed, with what.
fn added_or_changed(created: bool, m: &Machine, what: String, actor: String) -> EventKind {
    if created {
        EventKind::MachineAdded {
            machine: Box::new(m.redacted()),
            actor,
        }
    } else {
        EventKind::MachineChanged {
            machine: Box::new(m.redacted()),
            change: what,
            actor,
        }
    }
}

/// Sets the machine's derived token. A token an older mayu stored in the file keeps being
/// accepted (installed machines baked it in), as a hash; the file loses it at its next write.
fn adopt_token(key: &crate::inventory::machine_key::MachineKey, m: &mut Machine) {
    let derived = key.token(m.id.as_str());
    if !m.token.is_empty() && m.token != derived && m.legacy_token_sha256.is_none() {
        m.legacy_token_sha256 = Some(crate::inventory::machine_key::legacy_hash(&m.token));
    }
    m.token = derived;
}

fn fill(slot: &mut Option<String>, v: Option<String>) {
    if slot.is_none() {
        *slot = v;
    }
}

/// A boot-complete from this machine comes from its own disk: its profile boots from disk and
/// it is installed (or already running), so iPXE handed it `sanboot`, not an installer.
fn booted_from_disk(config: &Config, m: &Machine) -> bool {
    let on_disk = m
        .profile
        .as_deref()
        .and_then(|p| config.profile(p))
        .is_some_and(|p| p.boot_from_disk);
    on_disk && !m.reinstall && (m.installed || m.state == State::Running)
}

/// Changes worth a file write and a commit (phase timestamps alone are not).
/// Whether `b` differs from `a` in more than phase times (compared in place, no copy).
fn differs(a: &Machine, b: &mut Machine) -> bool {
    let phases = std::mem::replace(&mut b.phases, a.phases.clone());
    let stall = std::mem::replace(&mut b.stall, a.stall);
    let differ = *a != *b;
    b.phases = phases;
    b.stall = stall;
    differ
}

fn snapshot_of(config: &Config, idx: &Index) -> Snapshot {
    Snapshot {
        machines: idx.machines.values().map(Machine::redacted).collect(),
        profiles: tally::profiles(config, &idx.tally),
        waiting: idx.tally.waiting,
        ignored: idx.ignored_now(),
        timelines: idx.timelines_now(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
