//! The git audit trail: a repository in the inventory folder where every acknowledged change
//! becomes part of a commit, with its author. See `DESIGN.md` for the promise and the plan.
//!
//! A change's audit record is appended to the journal and synced *before* the change is
//! answered ([`GitAudit::append`]); one thread then commits everything pending — any number of
//! machines and authors — into one commit, retrying with backoff when git fails and never
//! dropping a record. At open, what the journal holds past HEAD is committed (`replayed`) and
//! machine files that differ from HEAD are committed (`recovered`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::{Oid, Repository, Signature};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::integrity::{self, IntegrityError};
use super::journal::{self, Journal, Record};
use crate::lease::ServiceStatus;
use crate::machine::MachineId;
use crate::text::escape_control;

/// The most records one commit takes.
const MAX_GROUP: usize = 4096;
/// The trailer naming the last journal record a commit covers.
const SEQ_TRAILER: &str = "Mayu-Seq: ";
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How soon `.git/index` is written again when an operator's git held its lock.
const INDEX_RETRY: Duration = Duration::from_millis(20);
/// The journal's name inside `.git/` (never tracked, never in the working tree).
const JOURNAL: &str = "mayu-journal";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error(transparent)]
    Damaged(#[from] Box<IntegrityError>),
    #[error("audit journal {}: {source}", .path.display())]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the audit thread has stopped")]
    Stopped,
    #[error("{pending} change(s) not yet committed to git after {waited:?}: {reason}; they stay in the journal and are committed at the next start")]
    Behind {
        pending: usize,
        waited: Duration,
        reason: String,
    },
}

/// One change, as the backend hands it over.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: MachineId,
    /// the file name inside the repository.
    pub file: String,
    /// the file's new content; `None` when it was deleted.
    pub content: Option<String>,
    pub what: String,
    pub author: String,
}

/// How the audit is doing, for the console, `/api/v1/services`, readiness and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditHealth {
    /// `ok`, `retrying` (commits fail; records wait in the journal) or `starting`.
    pub status: ServiceStatus,
    /// records journalled but not yet in a commit.
    pub pending: usize,
    /// commits that failed since start.
    pub failures: u64,
    /// records committed since start.
    pub committed: u64,
    pub last_error: Option<String>,
    /// what start-up did: stale locks removed, records replayed, files recovered.
    pub notes: Vec<String>,
}

enum Job {
    Records(Vec<Record>),
    Flush(mpsc::Sender<Result<(), String>>),
    /// the backend is closing: stop now (what is pending is safe in the journal).
    Stop,
}

/// Mirrors the audit's health into the `audit` service until `cancel`: the console header,
/// `/api/v1/services` and readiness read it from there.
pub async fn report(
    engine: crate::Engine,
    mut health: watch::Receiver<AuditHealth>,
    cancel: tokio_util::sync::CancellationToken,
) {
    // Only a change of state is news: not every commit.
    let mut shown: Option<(ServiceStatus, Option<String>, usize)> = None;
    loop {
        let h = health.borrow_and_update().clone();
        let key = (h.status, h.last_error.clone(), h.notes.len());
        if shown.as_ref() != Some(&key) {
            let detail = match (&h.last_error, h.status) {
                (Some(e), ServiceStatus::Retrying) => {
                    format!("commits failing, changes wait in the journal (none lost): {e}")
                }
                _ => "every change is committed or being committed".to_string(),
            };
            let detail = match h.notes.last() {
                Some(n) => format!("{detail}; at start: {n}"),
                None => detail,
            };
            // A failing audit is a problem line in the console header, not only a status.
            let problem = (h.status == ServiceStatus::Retrying).then(|| crate::lease::ServiceProblem {
                code: "audit_failing".into(),
                reason: format!(
                    "git audit cannot commit ({})",
                    h.last_error.as_deref().unwrap_or("unknown error")
                ),
                hint: "changes are safe in the journal; fix the repository (a held lock, a full disk) and they are committed".into(),
            });
            engine.set_service_problem("audit", h.status, 0, &detail, problem);
            shown = Some(key);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = health.changed() => if changed.is_err() { return },
        }
    }
}

/// A commit that touched one machine's file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub commit: String,
    pub author: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// this machine's line of the commit message.
    pub message: String,
    /// top-level fields of the machine file that differ from the parent commit.
    pub fields: Vec<String>,
}

struct Appender {
    journal: Journal,
    /// the next record's sequence number.
    next_seq: u64,
}

pub struct GitAudit {
    dir: PathBuf,
    tx: mpsc::Sender<Job>,
    appender: Arc<Mutex<Appender>>,
    health: watch::Receiver<AuditHealth>,
    /// joined on drop, so the next writer of the folder never races this one's last commit.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for GitAudit {
    fn drop(&mut self) {
        let _ = self.tx.send(Job::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Makes everything written below the repository durable in one go (objects of a whole
/// commit group, then the ref naming them), instead of libgit2's fsync per object.
fn sync_repo(repo: &Repository) -> Result<(), git2::Error> {
    crate::atomic::syncfs(repo.path())
        .map_err(|e| git2::Error::from_str(&format!("sync {}: {e}", repo.path().display())))
}

/// Points the branch HEAD names (or a detached HEAD) at `oid`, if it still is at `expected`.
fn move_head(
    repo: &Repository,
    oid: Oid,
    expected: Option<Oid>,
    log: &str,
) -> Result<(), git2::Error> {
    let head = repo.find_reference("HEAD")?;
    let name = head.symbolic_target().unwrap_or("HEAD").to_string();
    match expected {
        Some(old) => repo.reference_matching(&name, oid, true, old, log)?,
        None => repo.reference(&name, oid, false, log)?,
    };
    Ok(())
}

impl GitAudit {
    /// Opens the repository in `dir` (creating it with a first commit of what is there), checks
    /// it, clears stale locks and starts the commit thread, which first completes the history
    /// from the journal and the working tree.
    pub fn open(dir: &Path, author: &str) -> Result<GitAudit, AuditError> {
        let repo = match Repository::open(dir) {
            Ok(r) => r,
            Err(_) => {
                let repo = Repository::init(dir)?;
                // Through the one atomic writer: never half-written, and synced before the
                // first commit takes it in.
                let ignore = dir.join(".gitignore");
                crate::atomic::write(&ignore, b".*.tmp.*\n.mayu.lock\n", 0o644)
                    .map_err(|e| git2::Error::from_str(&format!("{}: {e}", ignore.display())))?;
                initial_commit(&repo, author)?;
                repo
            }
        };
        let mut notes = Vec::new();
        for lock in integrity::clear_stale_locks(repo.path()) {
            let note = format!("removed stale git lock {}", lock.display());
            tracing::warn!("{note}");
            notes.push(note);
        }
        integrity::verify_head(&repo)?;
        let journal_path = repo.path().join(JOURNAL);
        let jerr = |source| AuditError::Journal {
            path: journal_path.clone(),
            source,
        };
        let journalled = journal::read(&journal_path).map_err(jerr)?;
        let committed = head_seq(&repo);
        let next_seq = journalled
            .iter()
            .map(|r| r.seq)
            .max()
            .unwrap_or(0)
            .max(committed)
            + 1;
        let replay: Vec<Record> = journalled
            .into_iter()
            .filter(|r| r.seq > committed)
            .collect();
        let journal = Journal::open(&journal_path).map_err(jerr)?;
        let (health_tx, health) = watch::channel(AuditHealth {
            status: ServiceStatus::Starting,
            pending: replay.len(),
            failures: 0,
            committed: 0,
            last_error: None,
            notes,
        });
        let appender = Arc::new(Mutex::new(Appender { journal, next_seq }));
        let (tx, rx) = mpsc::channel();
        // libgit2's index is not Send: the worker is built on its own thread, which reports
        // whether that worked before `open` returns.
        let (ready_tx, ready_rx) = mpsc::channel();
        let (for_worker, author_for_worker) = (appender.clone(), author.to_string());
        let thread = std::thread::Builder::new()
            .name("git-audit".into())
            .spawn(
                move || match Worker::new(repo, &author_for_worker, for_worker, health_tx) {
                    Ok(worker) => {
                        let _ = ready_tx.send(Ok(()));
                        worker.run(rx, replay);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                },
            )
            .map_err(|e| git2::Error::from_str(&e.to_string()))?;
        ready_rx.recv().map_err(|_| AuditError::Stopped)??;
        Ok(GitAudit {
            dir: dir.to_path_buf(),
            tx,
            appender,
            health,
            thread: Some(thread),
        })
    }

    /// Makes `changes` durable audit records (journal append + sync) and queues them for git.
    /// Returns once they are on disk: from here on they reach the history, crash or not.
    pub fn append(&self, changes: Vec<Change>) -> Result<(), AuditError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut a = self.appender.lock().unwrap_or_else(|p| p.into_inner());
        let first = a.next_seq;
        let records: Vec<Record> = changes
            .into_iter()
            .enumerate()
            .map(|(i, c)| Record {
                seq: first + i as u64,
                time: now,
                id: c.id.to_string(),
                file: c.file,
                content: c.content,
                what: c.what,
                author: c.author,
            })
            .collect();
        let path = a.journal.path().to_path_buf();
        a.journal
            .append(&records)
            .map_err(|source| AuditError::Journal { path, source })?;
        a.next_seq = first + records.len() as u64;
        // Sent under the lock, so the thread sees records in sequence order.
        self.tx
            .send(Job::Records(records))
            .map_err(|_| AuditError::Stopped)
    }

    /// Waits until everything appended so far is committed.
    pub fn flush(&self) -> Result<(), AuditError> {
        self.flush_within(Duration::from_secs(3600))
    }

    /// [`GitAudit::flush`] with a deadline; past it, says how much is still pending and why.
    pub fn flush_within(&self, deadline: Duration) -> Result<(), AuditError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Job::Flush(tx))
            .map_err(|_| AuditError::Stopped)?;
        match rx.recv_timeout(deadline) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(self.behind(deadline, reason)),
            Err(RecvTimeoutError::Timeout) => {
                let reason = self
                    .health()
                    .last_error
                    .unwrap_or_else(|| "git is slow".into());
                Err(self.behind(deadline, reason))
            }
            Err(RecvTimeoutError::Disconnected) => Err(AuditError::Stopped),
        }
    }

    fn behind(&self, waited: Duration, reason: String) -> AuditError {
        AuditError::Behind {
            pending: self.health().pending,
            waited,
            reason,
        }
    }

    pub fn health(&self) -> AuditHealth {
        self.health.borrow().clone()
    }

    /// Changes of [`GitAudit::health`], for whoever shows it.
    pub fn watch_health(&self) -> watch::Receiver<AuditHealth> {
        self.health.clone()
    }

    /// The commits that changed `file`, newest first.
    pub fn history(&self, id: &MachineId, file: &str) -> Result<Vec<HistoryEntry>, AuditError> {
        self.flush_within(Duration::from_secs(10))?;
        let repo = Repository::open(&self.dir)?;
        let mut walk = repo.revwalk()?;
        walk.push_head()?;
        let mut out = Vec::new();
        let path = Path::new(file);
        let prefix = format!("{}: ", escape_control(id.as_str()));
        for oid in walk {
            let commit = repo.find_commit(oid?)?;
            let now = blob_of(&repo, &commit.tree()?, path);
            let before = match commit.parent(0) {
                Ok(p) => blob_of(&repo, &p.tree()?, path),
                Err(_) => None,
            };
            if now.as_ref().map(|(o, _)| *o) == before.as_ref().map(|(o, _)| *o) {
                continue;
            }
            let msg = commit.message().unwrap_or("");
            let line = msg
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| msg.lines().next().unwrap_or(""));
            let sig = commit.author();
            // Lines of a commit by several authors end with "(by NAME)".
            let (message, author) = match line.rsplit_once(" (by ") {
                Some((m, a)) if a.ends_with(')') => {
                    (m.to_string(), a.trim_end_matches(')').to_string())
                }
                _ => (line.to_string(), sig.name().unwrap_or("").to_string()),
            };
            out.push(HistoryEntry {
                commit: commit.id().to_string(),
                author,
                time: OffsetDateTime::from_unix_timestamp(sig.when().seconds())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                message,
                fields: changed_fields(before.map(|b| b.1), now.map(|b| b.1)),
            });
        }
        Ok(out)
    }
}

/// The last journal record git holds: the `Mayu-Seq` trailer of the newest commit that has one
/// (an operator may have committed by hand on top).
fn head_seq(repo: &Repository) -> u64 {
    let mut commit = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    for _ in 0..1000 {
        let Some(c) = commit else { break };
        let seq = c.message().and_then(|m| {
            m.lines()
                .rev()
                .find_map(|l| l.strip_prefix(SEQ_TRAILER))
                .and_then(|n| n.trim().parse().ok())
        });
        if let Some(seq) = seq {
            return seq;
        }
        commit = c.parent(0).ok();
    }
    0
}

fn blob_of(repo: &Repository, tree: &git2::Tree, path: &Path) -> Option<(Oid, Vec<u8>)> {
    let entry = tree.get_path(path).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    Some((entry.id(), blob.content().to_vec()))
}

fn changed_fields(before: Option<Vec<u8>>, after: Option<Vec<u8>>) -> Vec<String> {
    let parse = |b: Option<Vec<u8>>| -> serde_json::Map<String, serde_json::Value> {
        b.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default()
    };
    let (a, b) = (parse(before), parse(after));
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect()
}

fn signature(author: &str) -> Result<Signature<'static>, git2::Error> {
    let clean: String = escape_control(author.trim()).into_owned();
    let name = if clean.is_empty() { "mayu" } else { &clean };
    let email: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Signature::now(name, &format!("{email}@mayu"))
}

fn initial_commit(repo: &Repository, author: &str) -> Result<(), git2::Error> {
    let mut index = repo.index()?;
    index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = signature(author)?;
    let oid = repo.commit(None, &sig, &sig, "inventory created", &tree, &[])?;
    sync_repo(repo)?;
    move_head(repo, oid, None, "commit (initial): inventory created")?;
    sync_repo(repo)
}

/// The message and author of one commit over `records`; `tag` marks replayed or recovered
/// records. Every value is escaped: a machine cannot forge a line of the audit.
fn message(records: &[Record], tag: &str, default_author: &str) -> (String, String) {
    let authors: BTreeSet<&str> = records.iter().map(|r| r.author.as_str()).collect();
    let single = (authors.len() == 1).then(|| records[0].author.clone());
    let lines: Vec<String> = records
        .iter()
        .map(|r| {
            let line = format!(
                "{}: {}{tag}",
                escape_control(&r.id),
                escape_control(&r.what)
            );
            match single {
                Some(_) => line,
                None => format!("{line} (by {})", escape_control(&r.author)),
            }
        })
        .collect();
    let last = records.last().map(|r| r.seq).unwrap_or(0);
    let body = if lines.len() == 1 {
        lines[0].clone()
    } else {
        let who = match &single {
            Some(a) => escape_control(a).into_owned(),
            None => format!("{} authors", authors.len()),
        };
        format!("{} changes by {who}\n\n{}", lines.len(), lines.join("\n"))
    };
    let author = single.unwrap_or_else(|| default_author.to_string());
    (author, format!("{body}\n\n{SEQ_TRAILER}{last}\n"))
}

struct Worker {
    repo: Repository,
    /// HEAD's tree as an index, kept in memory: only changed entries are touched.
    index: git2::Index,
    head: Option<Oid>,
    author: String,
    appender: Arc<Mutex<Appender>>,
    health: watch::Sender<AuditHealth>,
    committed_seq: u64,
    /// `.git/index` lags HEAD (its lock was held when we tried).
    disk_index_stale: bool,
}

impl Worker {
    fn new(
        repo: Repository,
        author: &str,
        appender: Arc<Mutex<Appender>>,
        health: watch::Sender<AuditHealth>,
    ) -> Result<Worker, git2::Error> {
        let mut index = git2::Index::new()?;
        let head = repo.head().ok().and_then(|h| h.target());
        if let Some(h) = head {
            index.read_tree(&repo.find_commit(h)?.tree()?)?;
        }
        let committed_seq = head_seq(&repo);
        Ok(Worker {
            repo,
            index,
            head,
            author: author.to_string(),
            appender,
            health,
            committed_seq,
            disk_index_stale: false,
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Job>, replay: Vec<Record>) {
        let mut pending: Vec<Record> = replay;
        let mut tag = " (replayed)";
        let mut waiters: Vec<mpsc::Sender<Result<(), String>>> = Vec::new();
        let mut retry = FIRST_RETRY;
        let mut next_try = Instant::now();
        let mut recovered = false;
        loop {
            // Take everything queued; wait only when there is nothing to do.
            let job = if pending.is_empty()
                && waiters.is_empty()
                && recovered
                && !self.disk_index_stale
            {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(next_try.saturating_duration_since(Instant::now()))
            };
            match job {
                Ok(Job::Records(mut r)) => pending.append(&mut r),
                Ok(Job::Flush(w)) => waiters.push(w),
                Ok(Job::Stop) => return,
                Err(RecvTimeoutError::Timeout) => {}
                // Everyone has gone (after their own bounded flush): what is pending is safe in
                // the journal and is committed at the next start.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(job) = rx.try_recv() {
                match job {
                    Job::Records(mut r) => pending.append(&mut r),
                    Job::Flush(w) => waiters.push(w),
                    Job::Stop => return,
                }
            }
            if Instant::now() < next_try {
                continue;
            }
            let mut result = Ok(());
            while !pending.is_empty() && result.is_ok() {
                let n = pending.len().min(MAX_GROUP);
                result = self.commit(&pending[..n], tag);
                if result.is_ok() {
                    pending.drain(..n);
                }
            }
            if result.is_ok() && self.disk_index_stale && self.refresh_disk_index().is_err() {
                // An operator's git holds .git/index for a moment: the commits are in, but
                // `git status` would disagree; waiters are answered once it is written.
                next_try = Instant::now() + INDEX_RETRY;
                continue;
            }
            if result.is_ok() {
                tag = "";
                if !recovered {
                    // Once the journal is in, whatever else differs from HEAD on disk.
                    result = self.recover();
                    recovered = result.is_ok();
                }
            }
            match result {
                Ok(()) => {
                    retry = FIRST_RETRY;
                    next_try = Instant::now();
                    self.truncate_journal_if_done();
                    self.publish(ServiceStatus::Ok, pending.len(), None);
                    for w in waiters.drain(..) {
                        let _ = w.send(Ok(()));
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    tracing::error!(error = %reason, pending = pending.len(), retry_in = ?retry, "git audit commit failed; will retry");
                    self.health.send_modify(|h| h.failures += 1);
                    self.publish(ServiceStatus::Retrying, pending.len(), Some(reason.clone()));
                    next_try = Instant::now() + retry;
                    retry = (retry * 2).min(MAX_RETRY);
                    // A flush waiter learns why; the records stay pending.
                    for w in waiters.drain(..) {
                        let _ = w.send(Err(reason.clone()));
                    }
                }
            }
        }
    }

    fn publish(&self, status: ServiceStatus, pending: usize, error: Option<String>) {
        self.health.send_if_modified(|h| {
            let new_error = error.clone().or_else(|| {
                if status == ServiceStatus::Ok {
                    None
                } else {
                    h.last_error.clone()
                }
            });
            let changed = h.status != status || h.pending != pending || h.last_error != new_error;
            h.status = status;
            h.pending = pending;
            h.last_error = new_error;
            changed
        });
    }

    /// One commit over `records`.
    fn commit(&mut self, records: &[Record], tag: &str) -> Result<(), git2::Error> {
        for r in records {
            let path = Path::new(&r.file);
            match &r.content {
                Some(content) => {
                    let blob = self.repo.blob(content.as_bytes())?;
                    let entry = git2::IndexEntry {
                        ctime: git2::IndexTime::new(0, 0),
                        mtime: git2::IndexTime::new(0, 0),
                        dev: 0,
                        ino: 0,
                        mode: 0o100644,
                        uid: 0,
                        gid: 0,
                        file_size: u32::try_from(content.len()).unwrap_or(u32::MAX),
                        id: blob,
                        flags: 0,
                        flags_extended: 0,
                        path: r.file.as_bytes().to_vec(),
                    };
                    self.index.add(&entry)?;
                }
                None => {
                    if self.index.get_path(path, 0).is_some() {
                        self.index.remove_path(path)?;
                    }
                }
            }
        }
        let (author, text) = message(records, tag, &self.author);
        let made = (|| {
            let tree = self.repo.find_tree(self.index.write_tree_to(&self.repo)?)?;
            let sig = signature(&author)?;
            let parent = match self.head {
                Some(h) => Some(self.repo.find_commit(h)?),
                None => None,
            };
            let parents: Vec<&git2::Commit> = parent.iter().collect();
            let oid = self.repo.commit(None, &sig, &sig, &text, &tree, &parents)?;
            // The objects first, then the ref that names them: a power loss never leaves HEAD
            // naming an object that is not whole on disk.
            sync_repo(&self.repo)?;
            let summary = text.lines().next().unwrap_or_default();
            move_head(&self.repo, oid, self.head, &format!("commit: {summary}"))?;
            sync_repo(&self.repo)?;
            Ok(oid)
        })();
        let oid = match made {
            Ok(oid) => oid,
            Err(e) => {
                let _ = self.resync();
                return Err(e);
            }
        };
        self.head = Some(oid);
        if let Some(last) = records.last() {
            self.committed_seq = self.committed_seq.max(last.seq);
        }
        self.health
            .send_modify(|h| h.committed += records.len() as u64);
        // Best effort here; a failure is retried by the loop before anyone is told "done".
        let _ = self.refresh_disk_index();
        Ok(())
    }

    /// Keeps `.git/index` in step with HEAD for operators who run `git status`. An operator's
    /// own git may hold its lock for a moment: then it is retried like a commit.
    fn refresh_disk_index(&mut self) -> Result<(), git2::Error> {
        let Some(head) = self.head else {
            return Ok(());
        };
        let tree = self.repo.find_commit(head)?.tree()?;
        let written = self.repo.index().and_then(|mut i| {
            i.read_tree(&tree)?;
            i.write()
        });
        self.disk_index_stale = written.is_err();
        written
    }

    /// After a failed commit: start again from what git holds (someone else may have moved
    /// HEAD, e.g. an operator's own commit).
    fn resync(&mut self) -> Result<(), git2::Error> {
        self.head = self.repo.head().ok().and_then(|h| h.target());
        match self.head {
            Some(h) => self.index.read_tree(&self.repo.find_commit(h)?.tree()?),
            None => self.index.clear(),
        }
    }

    /// Commits machine files that differ from HEAD: changes no record describes (made while
    /// the audit was off, by hand, or by a crash between a file write and its record).
    fn recover(&mut self) -> Result<(), git2::Error> {
        let dir = match self.repo.workdir() {
            Some(d) => d.to_path_buf(),
            None => return Ok(()),
        };
        let mut records = Vec::new();
        let mut on_disk = BTreeSet::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            on_disk.insert(name.clone());
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            let oid = Oid::hash_object(git2::ObjectType::Blob, &bytes)?;
            if self.index.get_path(Path::new(&name), 0).map(|x| x.id) != Some(oid) {
                records.push(Record {
                    seq: self.committed_seq,
                    time: 0,
                    id: name.trim_end_matches(".json").to_string(),
                    file: name,
                    content: Some(String::from_utf8_lossy(&bytes).into_owned()),
                    what: "recovered: changed outside the audit".into(),
                    author: self.author.clone(),
                });
            }
        }
        let gone: Vec<String> = self
            .index
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .filter(|p| p.ends_with(".json") && !p.contains('/') && !on_disk.contains(p))
            .collect();
        for name in gone {
            records.push(Record {
                seq: self.committed_seq,
                time: 0,
                id: name.trim_end_matches(".json").to_string(),
                file: name,
                content: None,
                what: "recovered: removed outside the audit".into(),
                author: self.author.clone(),
            });
        }
        if records.is_empty() {
            return Ok(());
        }
        let n = records.len();
        self.commit(&records, "")?;
        let note = format!("committed {n} machine file change(s) the audit had not recorded");
        tracing::warn!("{note}");
        self.health.send_modify(|h| h.notes.push(note));
        Ok(())
    }

    /// Empties the journal when git holds every record in it.
    fn truncate_journal_if_done(&self) {
        let mut a = self.appender.lock().unwrap_or_else(|p| p.into_inner());
        if a.next_seq == self.committed_seq + 1 || a.next_seq <= self.committed_seq {
            if let Err(e) = a.journal.truncate() {
                tracing::warn!(error = %e, "cannot empty the audit journal");
            }
        }
    }
}
