//! The inventory's keys in etcd, typed: a thin wrapper over [`etcd_client::Client`].
//!
//! Keys below the configured prefix (`DESIGN.md`):
//!
//! | key | value |
//! |---|---|
//! | `machines/<id>` | a [`MachineRecord`] as JSON; its `mod_revision` is the machine's version |
//! | `seats/<profile>/<k>` | the id of the machine holding seat `k` of the profile |
//! | `servers/<name>` | a [`ServerInfo`] as JSON, under a lease kept alive ([`Store::register_server`]) |
//!
//! Every request goes to one endpoint and, when that one does not answer, to the next (the
//! one that answered last is asked first); each attempt is bounded ([`REQUEST_TIMEOUT`]), so
//! an etcd that does not answer at all is [`ClusterError::Unavailable`], never a hang, and one
//! member down changes nothing. A compare that failed is
//! [`ClusterError::Conflict`], naming what no longer held. [`Store::connect`] makes no request,
//! so a server can start (and serve from its cache) while etcd is unreachable.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client as etcd;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::ClusterConfig;
use crate::machine::{Machine, MachineId};

/// An etcd revision: the store's version after a write (a key's `mod_revision`). `0` is
/// "never written" in compares.
pub type Revision = i64;

/// The longest any single request waits for an answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection attempt to one endpoint takes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 keep-alive: a ping this often on open streams (etcd's minimum is 5 s)...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// ...answered within this, or the connection is dead (a watch then ends as unavailable).
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The lease of a live server's key (`servers/<name>`), in seconds.
pub const SERVER_TTL: i64 = 10;
/// The most checks, and the most ops, one [`Store::txn`] may hold: etcd's default
/// `--max-txn-ops`; a bigger transaction is refused ([`ClusterError::Refused`]).
pub const MAX_TXN_OPS: usize = 128;
/// Keys per page of [`Store::load`] (all pages read at the first page's revision).
const PAGE: i64 = 500;

/// Who changed a machine, why, from which server and when: carried in its record so every
/// watcher (and every git mirror) learns it with the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeInfo {
    /// the audit author: operator, API token name, the machine itself, ...
    pub actor: String,
    /// the audit message: what changed.
    pub what: String,
    /// the `cluster.name` of the server that wrote it.
    pub server: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl ChangeInfo {
    /// A change made now.
    pub fn now(
        actor: impl Into<String>,
        what: impl Into<String>,
        server: impl Into<String>,
    ) -> Self {
        ChangeInfo {
            actor: actor.into(),
            what: what.into(),
            server: server.into(),
            at: OffsetDateTime::now_utc(),
        }
    }
}

/// The value of `machines/<id>`: `{"machine": <the machine file's JSON>, "change": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub machine: Machine,
    pub change: ChangeInfo,
}

impl MachineRecord {
    /// The JSON stored in etcd. A stall is live state and is not stored (as in machine files).
    pub fn encode(&self) -> Result<Vec<u8>, ClusterError> {
        let encoded = if self.machine.stall.is_some() {
            let mut plain = self.clone();
            plain.machine.stall = None;
            serde_json::to_vec(&plain)
        } else {
            serde_json::to_vec(self)
        };
        encoded.map_err(|e| ClusterError::Encode {
            key: format!("machines/{}", self.machine.id),
            reason: e.to_string(),
        })
    }

    /// A record as read back from `key`.
    pub fn decode(key: &str, value: &[u8]) -> Result<MachineRecord, ClusterError> {
        serde_json::from_slice(value).map_err(|e| ClusterError::Decode {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }
}

/// What a live server says of itself under `servers/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// mayu's version.
    pub version: String,
    /// the boot port's address (`http.boot`).
    pub boot: String,
    /// the API port's address (`http.api`).
    pub api: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
}

/// Seat `index` (0 ≤ index < quantity) of a profile with a quantity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seat {
    pub profile: String,
    pub index: u32,
}

impl std::fmt::Display for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seat {} of {}", self.index, self.profile)
    }
}

/// A key below the prefix, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Machine(MachineId),
    Seat(Seat),
    Server(String),
}

/// The key layout below one prefix (`cluster.prefix`, no trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// Everything mayu keeps: `<prefix>/`.
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// `<prefix>/machines/`.
    pub fn machines(&self) -> String {
        format!("{}/machines/", self.prefix)
    }

    pub fn machine(&self, id: &MachineId) -> String {
        format!("{}/machines/{id}", self.prefix)
    }

    /// `<prefix>/seats/`.
    pub fn seats(&self) -> String {
        format!("{}/seats/", self.prefix)
    }

    pub fn seat(&self, seat: &Seat) -> String {
        format!("{}/seats/{}/{}", self.prefix, seat.profile, seat.index)
    }

    /// `<prefix>/servers/`.
    pub fn servers(&self) -> String {
        format!("{}/servers/", self.prefix)
    }

    pub fn server(&self, name: &str) -> String {
        format!("{}/servers/{name}", self.prefix)
    }

    /// `<prefix>/machine-key`: the key every server derives machine tokens from.
    pub fn machine_key(&self) -> String {
        format!("{}/machine-key", self.prefix)
    }

    /// What `key` is; `None` for a key mayu does not write.
    pub fn parse(&self, key: &[u8]) -> Option<Key> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let (kind, rest) = rest.split_once('/')?;
        match kind {
            "machines" => rest.parse().ok().map(Key::Machine),
            "seats" => {
                let (profile, index) = rest.split_once('/')?;
                if profile.is_empty() {
                    return None;
                }
                Some(Key::Seat(Seat {
                    profile: profile.to_string(),
                    index: index.parse().ok()?,
                }))
            }
            "servers" if !rest.is_empty() && !rest.contains('/') => {
                Some(Key::Server(rest.to_string()))
            }
            _ => None,
        }
    }
}

/// A key below the prefix whose value could not be read; left as it is, reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub reason: String,
}

/// The whole inventory at one revision ([`Store::load`]).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// the store's revision the snapshot was read at: watch from `revision + 1`.
    pub revision: Revision,
    /// every machine with its `mod_revision` (the version to compare against), by key order.
    pub machines: Vec<(MachineRecord, Revision)>,
    /// every taken seat and the machine holding it.
    pub seats: Vec<(Seat, MachineId)>,
    /// records that could not be decoded.
    pub problems: Vec<Problem>,
}

/// One compare of a transaction ([`Store::txn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `mod_revision(machines/<id>) == revision`; `revision: 0` means "no such machine yet".
    MachineAt { id: MachineId, revision: Revision },
    /// `create_revision(seats/<p>/<k>) == 0`: the seat is free.
    SeatFree(Seat),
    /// the seat holds `id` (the seat a machine gives up is still its own).
    SeatHeldBy { seat: Seat, id: MachineId },
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::MachineAt { id, revision: 0 } => write!(f, "machine {id} is new"),
            Check::MachineAt { id, revision } => {
                write!(f, "machine {id} is still at revision {revision}")
            }
            Check::SeatFree(seat) => write!(f, "{seat} is free"),
            Check::SeatHeldBy { seat, id } => write!(f, "{seat} is held by {id}"),
        }
    }
}

/// One write of a transaction ([`Store::txn`]), applied only when every [`Check`] holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `put machines/<id>`.
    PutMachine(Box<MachineRecord>),
    /// `delete machines/<id>`.
    DeleteMachine(MachineId),
    /// `put seats/<p>/<k> = <id>`.
    TakeSeat { seat: Seat, id: MachineId },
    /// `delete seats/<p>/<k>`.
    FreeSeat(Seat),
}

/// One change seen by a [`Watch`], with the revision that made it (events of one transaction
/// share it; they arrive in revision order).
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// a machine's record was written; `revision` is its new `mod_revision`.
    Machine {
        record: Box<MachineRecord>,
        revision: Revision,
    },
    MachineDeleted {
        id: MachineId,
        revision: Revision,
    },
    SeatTaken {
        seat: Seat,
        id: MachineId,
        revision: Revision,
    },
    SeatFreed {
        seat: Seat,
        revision: Revision,
    },
    /// a server registered (or re-registered) itself.
    ServerUp {
        name: String,
        info: ServerInfo,
        revision: Revision,
    },
    /// a server's key went away: it stopped, or its lease expired.
    ServerDown {
        name: String,
        revision: Revision,
    },
    /// a value below the prefix that could not be decoded (reported, skipped).
    Undecodable {
        problem: Problem,
        revision: Revision,
    },
}

impl WatchEvent {
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Machine { revision, .. }
            | WatchEvent::MachineDeleted { revision, .. }
            | WatchEvent::SeatTaken { revision, .. }
            | WatchEvent::SeatFreed { revision, .. }
            | WatchEvent::ServerUp { revision, .. }
            | WatchEvent::ServerDown { revision, .. }
            | WatchEvent::Undecodable { revision, .. } => *revision,
        }
    }
}

/// An etcd member ([`Store::members`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
    pub learner: bool,
}

/// How one configured endpoint answered a status request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    pub endpoint: String,
    /// the member behind it, its view of the leader, its version; or why it did not answer.
    pub health: Result<EndpointHealth, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    pub member_id: u64,
    /// the leader's member id as this member sees it; `None`: it knows of no leader.
    pub leader: Option<u64>,
    pub version: String,
    pub raft_term: u64,
}

/// The cluster as the console header shows it ([`Store::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// the leader's member id as the first answering member sees it.
    pub leader: Option<u64>,
    /// every configured endpoint, in configuration order.
    pub endpoints: Vec<EndpointStatus>,
}

impl ClusterStatus {
    /// Whether at least one endpoint answered and knows a leader: writes can succeed.
    pub fn healthy(&self) -> bool {
        self.endpoints
            .iter()
            .any(|e| matches!(&e.health, Ok(h) if h.leader.is_some()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// etcd did not answer (no endpoint reachable, timeout, no leader): nothing was written.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// A compare failed: another write came first. Nothing was written.
    #[error(
        "conflict at etcd revision {revision}: no longer true: {}",
        list(failed)
    )]
    Conflict {
        /// the compares that failed.
        failed: Vec<Check>,
        /// the store's revision when they were evaluated.
        revision: Revision,
    },
    /// The revision asked for is compacted away: reload ([`Store::load`]) and watch anew.
    #[error("etcd revision {requested} is compacted (the oldest kept is {compacted}); reload")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("cluster.tls: {}: {reason}", path.display())]
    Tls { path: PathBuf, reason: String },
    #[error("etcd key {key}: cannot encode: {reason}")]
    Encode { key: String, reason: String },
    #[error("etcd key {key}: cannot decode its value: {reason}")]
    Decode { key: String, reason: String },
    /// etcd answered with an error (permission, a request it refuses, ...).
    #[error("etcd at {endpoints} refused {what}: {reason}")]
    Refused {
        endpoints: String,
        what: String,
        reason: String,
    },
}

fn list(checks: &[Check]) -> String {
    checks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ClusterError {
    /// etcd could not be reached (as opposed to a refused or conflicting request).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ClusterError::Unavailable(_))
    }
}

/// A client of the cluster's etcd: one connection per configured endpoint, requests failing
/// over from one to the next. Cheap to clone (clones share connections).
#[derive(Clone)]
pub struct Store {
    each: Vec<(String, etcd::Client)>,
    /// the endpoint that answered last: asked first.
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    keys: Keys,
    name: String,
    endpoints: Vec<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.keys.prefix)
            .field("name", &self.name)
            .finish()
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, ClusterError> {
    let bytes = std::fs::read(path).map_err(|e| ClusterError::Tls {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(ClusterError::Tls {
            path: path.to_path_buf(),
            reason: "not a PEM file (no -----BEGIN line)".into(),
        });
    }
    Ok(bytes)
}

impl Store {
    /// A client for `cluster`'s endpoints (TLS from its files). Makes no request: an
    /// unreachable etcd shows as [`ClusterError::Unavailable`] on the first call.
    pub async fn connect(cluster: &ClusterConfig) -> Result<Store, ClusterError> {
        let mut options = etcd::ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_tcp_keepalive(KEEPALIVE_INTERVAL)
            // a member cut off from the others refuses rather than answers stale or hangs
            .with_require_leader(true);
        if let Some(tls) = &cluster.tls {
            let mut config = etcd::TlsOptions::new()
                .ca_certificate(etcd::Certificate::from_pem(read_pem(&tls.ca)?));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(etcd::Identity::from_pem(read_pem(cert)?, read_pem(key)?));
            }
            options = options.with_tls(config);
        }
        let joined = cluster.etcd.join(", ");
        let connect = |endpoints: Vec<String>, options: etcd::ConnectOptions| {
            let joined = endpoints.join(", ");
            async move {
                match tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    etcd::Client::connect(&endpoints, Some(options)),
                )
                .await
                {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(classify(&joined, "a connection", e)),
                    Err(_) => Err(ClusterError::Unavailable(format!(
                        "{joined}: no connection within {}s",
                        REQUEST_TIMEOUT.as_secs()
                    ))),
                }
            }
        };
        let mut each = Vec::with_capacity(cluster.etcd.len());
        for e in &cluster.etcd {
            each.push((e.clone(), connect(vec![e.clone()], options.clone()).await?));
        }
        tracing::debug!(endpoints = %joined, prefix = %cluster.prefix, "etcd client ready");
        Ok(Store {
            each,
            current: Default::default(),
            keys: Keys::new(&cluster.prefix),
            name: cluster.name.clone(),
            endpoints: cluster.etcd.clone(),
        })
    }

    /// This server's name (`cluster.name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn joined(&self) -> String {
        self.endpoints.join(", ")
    }

    /// `request` on one endpoint after the other (the last that answered first), each attempt
    /// bounded by [`REQUEST_TIMEOUT`], until one answers: its answer (and the endpoint), a
    /// refusal, or `Unavailable` naming why each endpoint did not answer.
    async fn call<T, F, Fut>(&self, what: &str, mut request: F) -> Result<T, ClusterError>
    where
        F: FnMut(etcd::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd::Error>>,
    {
        use std::sync::atomic::Ordering;
        let n = self.each.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut reasons = Vec::with_capacity(n);
        for k in 0..n {
            let i = (first + k) % n;
            let (endpoint, client) = &self.each[i];
            match bounded(endpoint, what, request(client.clone())).await {
                Ok(v) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(ClusterError::Unavailable(why)) => reasons.push(why),
                Err(e) => return Err(e),
            }
        }
        Err(ClusterError::Unavailable(if reasons.is_empty() {
            "no etcd endpoint configured".into()
        } else {
            reasons.join("; ")
        }))
    }

    /// The endpoint that answered last.
    fn current_endpoint(&self) -> String {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        self.each
            .get(i)
            .map(|(e, _)| e.clone())
            .unwrap_or_else(|| self.joined())
    }

    /// Every machine and seat, read at one revision (pages of [`PAGE`] keys, all at the
    /// first page's revision): what this server starts from, watching from `revision + 1`.
    pub async fn load(&self) -> Result<Snapshot, ClusterError> {
        let all = self.keys.all();
        let end = prefix_end(all.as_bytes());
        let mut from = all.clone().into_bytes();
        let mut revision: Revision = 0;
        let mut snapshot = Snapshot {
            revision: 0,
            machines: Vec::new(),
            seats: Vec::new(),
            problems: Vec::new(),
        };
        loop {
            let mut options = etcd::GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let mut resp = self
                .call("a read of the inventory", |c| {
                    let (from, options) = (from.clone(), options.clone());
                    async move { c.kv_client().get(from, Some(options)).await }
                })
                .await
                .map_err(|e| match e {
                    ClusterError::Compacted { compacted, .. } => ClusterError::Compacted {
                        requested: revision,
                        compacted,
                    },
                    other => other,
                })?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            let Some(last) = kvs.last() else { break };
            let mut next = last.key().to_vec();
            next.push(0);
            for kv in &kvs {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                match self.keys.parse(kv.key()) {
                    Some(Key::Machine(id)) => match MachineRecord::decode(&key, kv.value()) {
                        Ok(r) if r.machine.id == id => {
                            snapshot.machines.push((r, kv.mod_revision()))
                        }
                        Ok(r) => snapshot.problems.push(Problem {
                            key,
                            reason: format!("holds machine {}", r.machine.id),
                        }),
                        Err(e) => snapshot.problems.push(Problem {
                            key,
                            reason: e.to_string(),
                        }),
                    },
                    Some(Key::Seat(seat)) => match seat_holder(kv.value()) {
                        Some(id) => snapshot.seats.push((seat, id)),
                        None => snapshot.problems.push(Problem {
                            key,
                            reason: "a seat's value is no machine id".into(),
                        }),
                    },
                    Some(Key::Server(_)) | None => {}
                }
            }
            if !more {
                break;
            }
            from = next;
        }
        snapshot.revision = revision;
        Ok(snapshot)
    }

    /// One machine's record and `mod_revision` now; `None`: no such machine.
    pub async fn machine(
        &self,
        id: &MachineId,
    ) -> Result<Option<(MachineRecord, Revision)>, ClusterError> {
        let key = self.keys.machine(id);
        let resp = self
            .call(&format!("a read of {key}"), |c| {
                let key = key.clone();
                async move { c.kv_client().get(key, None).await }
            })
            .await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some((
                MachineRecord::decode(&key, kv.value())?,
                kv.mod_revision(),
            ))),
        }
    }

    /// Every taken seat now, and the revision read at.
    pub async fn seats(&self) -> Result<(Vec<(Seat, MachineId)>, Revision), ClusterError> {
        let resp = self
            .read_prefix("a read of the seats", self.keys.seats())
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let seats = resp
            .kvs()
            .iter()
            .filter_map(|kv| match self.keys.parse(kv.key()) {
                Some(Key::Seat(seat)) => seat_holder(kv.value()).map(|id| (seat, id)),
                _ => None,
            })
            .collect();
        Ok((seats, revision))
    }

    /// Every key below `prefix` now (`what` names the read in errors).
    async fn read_prefix(
        &self,
        what: &str,
        prefix: String,
    ) -> Result<etcd::GetResponse, ClusterError> {
        self.call(what, |c| {
            let prefix = prefix.clone();
            async move {
                c.kv_client()
                    .get(prefix, Some(etcd::GetOptions::new().with_prefix()))
                    .await
            }
        })
        .await
    }

    /// The etcd key a check compares.
    fn check_key(&self, c: &Check) -> String {
        match c {
            Check::MachineAt { id, .. } => self.keys.machine(id),
            Check::SeatFree(seat) | Check::SeatHeldBy { seat, .. } => self.keys.seat(seat),
        }
    }

    /// One compare-and-swap: when every check holds, applies every op, in one transaction.
    /// `Ok`: the store's new revision (each machine put has it as its `mod_revision`).
    /// `Err(Conflict)`: some check failed (named), nothing written. `Err(Unavailable)`: etcd
    /// did not answer in time; nothing acknowledged (the write may still have happened: reload).
    /// At most [`MAX_TXN_OPS`] checks and as many ops.
    pub async fn txn(&self, checks: &[Check], ops: &[Op]) -> Result<Revision, ClusterError> {
        let mut compares = Vec::with_capacity(checks.len());
        let mut on_failure = Vec::with_capacity(checks.len());
        for c in checks {
            let key = self.check_key(c);
            compares.push(match c {
                Check::MachineAt { revision, .. } => {
                    etcd::Compare::mod_revision(key.clone(), etcd::CompareOp::Equal, *revision)
                }
                Check::SeatFree(_) => {
                    etcd::Compare::create_revision(key.clone(), etcd::CompareOp::Equal, 0)
                }
                Check::SeatHeldBy { id, .. } => {
                    etcd::Compare::value(key.clone(), etcd::CompareOp::Equal, id.as_str())
                }
            });
            on_failure.push(etcd::TxnOp::get(key, None));
        }
        let mut then = Vec::with_capacity(ops.len());
        for op in ops {
            then.push(match op {
                Op::PutMachine(record) => etcd::TxnOp::put(
                    self.keys.machine(&record.machine.id),
                    record.encode()?,
                    None,
                ),
                Op::DeleteMachine(id) => etcd::TxnOp::delete(self.keys.machine(id), None),
                Op::TakeSeat { seat, id } => {
                    etcd::TxnOp::put(self.keys.seat(seat), id.as_str(), None)
                }
                Op::FreeSeat(seat) => etcd::TxnOp::delete(self.keys.seat(seat), None),
            });
        }
        let txn = etcd::Txn::new()
            .when(compares)
            .and_then(then)
            .or_else(on_failure);
        let resp = self
            .call("a transaction", |c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        if resp.succeeded() {
            return Ok(revision);
        }
        // Which compares failed, from the values read in the same transaction.
        let mut failed = Vec::new();
        for (c, r) in checks.iter().zip(resp.op_responses()) {
            let found = match &r {
                etcd::TxnOpResponse::Get(g) => g.kvs().first(),
                _ => None,
            };
            let holds = match c {
                Check::MachineAt { revision, .. } => {
                    found.map(|kv| kv.mod_revision()).unwrap_or(0) == *revision
                }
                Check::SeatFree(_) => found.is_none(),
                Check::SeatHeldBy { id, .. } => {
                    found.is_some_and(|kv| kv.value() == id.as_str().as_bytes())
                }
            };
            if !holds {
                failed.push(c.clone());
            }
        }
        Err(ClusterError::Conflict { failed, revision })
    }

    /// Watches every key below the prefix from `from` (normally a snapshot's `revision + 1`).
    /// When `from` is compacted away, etcd creates the watch and cancels it at once: this or
    /// the first [`Watch::next`] is `Err(Compacted)`; reload and watch anew.
    pub async fn watch(&self, from: Revision) -> Result<Watch, ClusterError> {
        let all = self.keys.all();
        let options = etcd::WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_prev_key();
        let stream = self
            .call("a watch", |c| {
                let (all, options) = (all.clone(), options.clone());
                async move { c.watch_client().watch(all, Some(options)).await }
            })
            .await?;
        let mut watch = Watch {
            stream,
            keys: self.keys.clone(),
            endpoints: self.current_endpoint(),
            pending: VecDeque::new(),
            from,
        };
        // The first answer says the watch exists (or that `from` is compacted).
        let first = bounded(&watch.endpoints, "a watch", watch.stream.message()).await?;
        watch.take(first, true)?;
        Ok(watch)
    }

    /// Registers this server under `servers/<name>` with a lease of [`SERVER_TTL`] seconds,
    /// kept alive by a task until the returned [`ServerLease`] is released or dropped. A lease
    /// lost while etcd was unreachable is granted anew and the key written again.
    pub async fn register_server(&self, info: &ServerInfo) -> Result<ServerLease, ClusterError> {
        let key = self.keys.server(&self.name);
        let value = serde_json::to_vec(info).map_err(|e| ClusterError::Encode {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let id = self.put_leased(&key, &value).await?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (id_tx, id_rx) = tokio::sync::watch::channel(id);
        let store = self.clone();
        let task = tokio::spawn(keep_registered(
            store,
            key.clone(),
            value,
            id,
            id_tx,
            stop_rx,
        ));
        Ok(ServerLease {
            store: self.clone(),
            key,
            lease: id_rx,
            stop: Some(stop_tx),
            task,
        })
    }

    /// Grants a lease and puts `key = value` under it: the lease id.
    async fn put_leased(&self, key: &str, value: &[u8]) -> Result<i64, ClusterError> {
        let granted = self
            .call("a lease", |c| async move {
                c.lease_client().grant(SERVER_TTL, None).await
            })
            .await?;
        let id = granted.id();
        self.call(&format!("a write of {key}"), |c| {
            let (key, value) = (key.to_string(), value.to_vec());
            async move {
                c.kv_client()
                    .put(key, value, Some(etcd::PutOptions::new().with_lease(id)))
                    .await
            }
        })
        .await?;
        Ok(id)
    }

    /// The cluster's machine key: `offered` if none was stored yet (then stored, in one
    /// transaction), else the one a server stored first. Every server derives the same tokens.
    pub async fn machine_key(&self, offered: &str) -> Result<String, ClusterError> {
        let key = self.keys.machine_key();
        let txn = etcd::Txn::new()
            .when([etcd::Compare::create_revision(
                key.clone(),
                etcd::CompareOp::Equal,
                0,
            )])
            .and_then([etcd::TxnOp::put(key.clone(), offered, None)])
            .or_else([etcd::TxnOp::get(key.clone(), None)]);
        let resp = self
            .call("the machine key", |c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            return Ok(offered.to_string());
        }
        let stored = resp.op_responses().into_iter().find_map(|r| match r {
            etcd::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        let stored = stored.ok_or_else(|| ClusterError::Decode {
            key: key.clone(),
            reason: "present but not read".into(),
        })?;
        String::from_utf8(stored).map_err(|e| ClusterError::Decode {
            key,
            reason: e.to_string(),
        })
    }

    /// The live servers (`servers/*`), by name.
    pub async fn servers(&self) -> Result<Vec<(String, ServerInfo)>, ClusterError> {
        let resp = self
            .read_prefix("a read of the servers", self.keys.servers())
            .await?;
        let mut servers = Vec::new();
        for kv in resp.kvs() {
            if let Some(Key::Server(name)) = self.keys.parse(kv.key()) {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let info =
                    serde_json::from_slice(kv.value()).map_err(|e| ClusterError::Decode {
                        key,
                        reason: e.to_string(),
                    })?;
                servers.push((name, info));
            }
        }
        Ok(servers)
    }

    /// The etcd cluster's members.
    pub async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        let resp = self
            .call("the member list", |c| async move {
                c.cluster_client().member_list().await
            })
            .await?;
        Ok(resp
            .members()
            .iter()
            .map(|m| Member {
                id: m.id(),
                name: m.name().to_string(),
                client_urls: m.client_urls().to_vec(),
                peer_urls: m.peer_urls().to_vec(),
                learner: m.is_learner(),
            })
            .collect())
    }

    /// Every configured endpoint asked for its status at once (each bounded by
    /// [`REQUEST_TIMEOUT`]): which member answers there, the leader it sees, or why it did not.
    pub async fn status(&self) -> ClusterStatus {
        let asks = self.each.iter().map(|(endpoint, client)| {
            let mut m = client.maintenance_client();
            async move {
                let health = bounded(endpoint, "a status request", m.status())
                    .await
                    .map(|s| EndpointHealth {
                        member_id: s.header().map(|h| h.member_id()).unwrap_or(0),
                        leader: Some(s.leader()).filter(|&l| l != 0),
                        version: s.version().to_string(),
                        raft_term: s.raft_term(),
                    })
                    .map_err(|e| e.to_string());
                EndpointStatus {
                    endpoint: endpoint.clone(),
                    health,
                }
            }
        });
        let endpoints = futures_util::future::join_all(asks).await;
        let leader = endpoints
            .iter()
            .find_map(|e| e.health.as_ref().ok().and_then(|h| h.leader));
        ClusterStatus { leader, endpoints }
    }
}

/// A registration under `servers/<name>` kept alive ([`Store::register_server`]). Dropping it
/// stops the keep-alive (the key goes when the lease expires); [`ServerLease::release`] also
/// revokes the lease, so the key goes at once.
pub struct ServerLease {
    store: Store,
    key: String,
    lease: tokio::sync::watch::Receiver<i64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerLease {
    /// The key registered.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Stops the keep-alive and revokes the lease (bounded): the key is gone when it returns
    /// `Ok`.
    pub async fn release(mut self) -> Result<(), ClusterError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let id = *self.lease.borrow();
        self.store
            .call("a lease revoke", |c| async move {
                c.lease_client().revoke(id).await
            })
            .await
            .map(|_| ())
    }
}

impl Drop for ServerLease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps lease `id` alive every third of its TTL; grants a new one (and writes the key again)
/// when it was lost.
async fn keep_registered(
    store: Store,
    key: String,
    value: Vec<u8>,
    mut id: i64,
    id_tx: tokio::sync::watch::Sender<i64>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let period = Duration::from_secs(u64::try_from(SERVER_TTL / 3).unwrap_or(1).max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let alive = store
            .call("a lease keep-alive", |c| async move {
                let (mut keeper, mut answers) = c.lease_client().keep_alive(id).await?;
                keeper.keep_alive().await?;
                Ok(answers.message().await?.map(|a| a.ttl() > 0))
            })
            .await;
        match alive {
            Ok(Some(true)) => continue,
            Err(e) if e.is_unavailable() => {
                tracing::debug!(key = %key, error = %e, "etcd lease keep-alive failed");
                continue;
            }
            // No TTL left, or etcd no longer knows the lease.
            _ => {
                tracing::warn!(key = %key, "etcd lease of this server expired; registering again");
            }
        }
        match store.put_leased(&key, &value).await {
            Ok(new) => {
                id = new;
                let _ = id_tx.send(new);
            }
            Err(e) => tracing::debug!(key = %key, error = %e, "etcd re-registration failed"),
        }
    }
}

/// A watch of the prefix ([`Store::watch`]): typed events in revision order.
pub struct Watch {
    stream: etcd::WatchStream,
    keys: Keys,
    endpoints: String,
    pending: VecDeque<WatchEvent>,
    from: Revision,
}

impl Watch {
    /// The next change. `Err(Compacted)`: the watch fell behind a compaction (reload);
    /// `Err(Unavailable)`: the stream broke (etcd unreachable): reload or watch again from
    /// the revision after the last event seen.
    pub async fn next(&mut self) -> Result<WatchEvent, ClusterError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            let msg = self
                .stream
                .message()
                .await
                .map_err(|e| classify(&self.endpoints, "the watch", e))?;
            self.take(msg, false)?;
        }
    }

    /// Queues the events of one answer; `Err` when the watch ended.
    fn take(&mut self, msg: Option<etcd::WatchResponse>, first: bool) -> Result<(), ClusterError> {
        let Some(resp) = msg else {
            return Err(ClusterError::Unavailable(format!(
                "{}: the watch stream ended",
                self.endpoints
            )));
        };
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                return Err(ClusterError::Compacted {
                    requested: self.from,
                    compacted: resp.compact_revision(),
                });
            }
            return Err(ClusterError::Unavailable(format!(
                "{}: the watch was cancelled: {}",
                self.endpoints,
                resp.cancel_reason()
            )));
        }
        if first && !resp.created() && resp.events().is_empty() {
            tracing::debug!("etcd watch: first answer is no creation");
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let revision = kv.mod_revision();
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let deleted = matches!(ev.event_type(), etcd::EventType::Delete);
            let event = match self.keys.parse(kv.key()) {
                None => continue,
                Some(Key::Machine(id)) if deleted => WatchEvent::MachineDeleted { id, revision },
                Some(Key::Machine(id)) => match MachineRecord::decode(&key, kv.value()) {
                    Ok(record) if record.machine.id == id => WatchEvent::Machine {
                        record: Box::new(record),
                        revision,
                    },
                    Ok(record) => WatchEvent::Undecodable {
                        problem: Problem {
                            key,
                            reason: format!("holds machine {}", record.machine.id),
                        },
                        revision,
                    },
                    Err(e) => WatchEvent::Undecodable {
                        problem: Problem {
                            key,
                            reason: e.to_string(),
                        },
                        revision,
                    },
                },
                Some(Key::Seat(seat)) if deleted => WatchEvent::SeatFreed { seat, revision },
                Some(Key::Seat(seat)) => match seat_holder(kv.value()) {
                    Some(id) => WatchEvent::SeatTaken { seat, id, revision },
                    None => WatchEvent::Undecodable {
                        problem: Problem {
                            key,
                            reason: "a seat's value is no machine id".into(),
                        },
                        revision,
                    },
                },
                Some(Key::Server(name)) if deleted => WatchEvent::ServerDown { name, revision },
                Some(Key::Server(name)) => match serde_json::from_slice(kv.value()) {
                    Ok(info) => WatchEvent::ServerUp {
                        name,
                        info,
                        revision,
                    },
                    Err(e) => WatchEvent::Undecodable {
                        problem: Problem {
                            key,
                            reason: e.to_string(),
                        },
                        revision,
                    },
                },
            };
            self.from = revision + 1;
            self.pending.push_back(event);
        }
        Ok(())
    }
}

/// The machine id a seat's value names.
fn seat_holder(value: &[u8]) -> Option<MachineId> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The end of the range of every key starting with `prefix` (etcd's prefix range end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `fut` bounded by [`REQUEST_TIMEOUT`], its error classified.
async fn bounded<T>(
    endpoints: &str,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, etcd::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(endpoints, what, e)),
        Err(_) => Err(ClusterError::Unavailable(format!(
            "{endpoints}: no answer to {what} within {}s",
            REQUEST_TIMEOUT.as_secs()
        ))),
    }
}

/// An etcd client error as mayu reports it: unreachable (transport, timeout, no leader),
/// compacted, or refused.
fn classify(endpoints: &str, what: &str, e: etcd::Error) -> ClusterError {
    use tonic_code::*;
    let unavailable =
        |reason: String| ClusterError::Unavailable(format!("{endpoints}: {what} failed: {reason}"));
    match e {
        etcd::Error::TransportError(t) => unavailable(transport_reason(&t)),
        etcd::Error::IoError(io) => unavailable(io.to_string()),
        etcd::Error::GRpcStatus(s) => {
            // the message and its causes ("tcp connect error: Connection refused (os error 111)")
            let mut message = s.message().to_string();
            let mut source = std::error::Error::source(&s);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = cause.source();
            }
            match s.code() as i32 {
                UNAVAILABLE | DEADLINE_EXCEEDED | CANCELLED | ABORTED => unavailable(message),
                UNKNOWN if message.contains("transport") || message.contains("connect") => {
                    unavailable(message)
                }
                OUT_OF_RANGE if message.contains("compacted") => ClusterError::Compacted {
                    requested: 0,
                    compacted: 0,
                },
                _ => ClusterError::Refused {
                    endpoints: endpoints.to_string(),
                    what: what.to_string(),
                    reason: message,
                },
            }
        }
        // etcd forgot the lease (it expired or was revoked): an answer, not an outage.
        etcd::Error::LeaseKeepAliveError(m) if m.contains("not found") => ClusterError::Refused {
            endpoints: endpoints.to_string(),
            what: what.to_string(),
            reason: m,
        },
        etcd::Error::WatchError(m) | etcd::Error::LeaseKeepAliveError(m) => unavailable(m),
        other => ClusterError::Refused {
            endpoints: endpoints.to_string(),
            what: what.to_string(),
            reason: other.to_string(),
        },
    }
}

/// A transport error with its causes (tonic's own text is only "transport error").
fn transport_reason(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// gRPC status codes as numbers (tonic is no direct dependency of mayu).
mod tonic_code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const ABORTED: i32 = 10;
    pub const OUT_OF_RANGE: i32 = 11;
    pub const UNAVAILABLE: i32 = 14;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let keys = Keys::new("/mayu");
        let id: MachineId = "sn00001".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys.machine(&id), "/mayu/machines/sn00001");
        assert_eq!(
            keys.parse(b"/mayu/machines/sn00001"),
            Some(Key::Machine(id))
        );
        let seat = Seat {
            profile: "worker".into(),
            index: 7,
        };
        assert_eq!(keys.seat(&seat), "/mayu/seats/worker/7");
        assert_eq!(keys.parse(b"/mayu/seats/worker/7"), Some(Key::Seat(seat)));
        assert_eq!(
            keys.parse(b"/mayu/servers/rack-a"),
            Some(Key::Server("rack-a".into()))
        );
        assert_eq!(keys.parse(b"/mayu2/machines/sn00001"), None);
        assert_eq!(keys.parse(b"/mayu/seats/worker/x"), None);
        assert_eq!(prefix_end(b"/mayu/"), b"/mayu0".to_vec());
    }
}
