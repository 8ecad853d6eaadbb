//! The git audit trail: a repository in the inventory folder, one commit per change, authored
//! by whoever made it. All git work happens on one thread fed by a channel, so request paths
//! never wait for git; a burst from one author is grouped, one message line per change.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use git2::{Repository, Signature};
use serde::Serialize;
use time::OffsetDateTime;

use crate::machine::MachineId;

/// The most changes folded into one commit during a burst.
const MAX_GROUP: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("the audit thread has stopped")]
    Stopped,
}

/// One change to record.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: MachineId,
    /// the file name inside the repository.
    pub file: String,
    /// false when the file was deleted.
    pub present: bool,
    pub what: String,
    pub author: String,
}

enum Job {
    Record(Record),
    Flush(mpsc::Sender<()>),
}

/// A commit that touched one machine's file.
#[derive(Debug, Clone, Serialize, PartialEq)]
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

#[derive(Clone)]
pub struct GitAudit {
    dir: PathBuf,
    tx: mpsc::Sender<Job>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl GitAudit {
    /// Opens the repository in `dir`, creating it (with a first commit of what is there) if new.
    pub fn open(dir: &Path, author: &str) -> Result<GitAudit, AuditError> {
        let repo = match Repository::open(dir) {
            Ok(r) => r,
            Err(_) => {
                let repo = Repository::init(dir)?;
                std::fs::write(dir.join(".gitignore"), ".*.tmp.*\n")
                    .map_err(|e| git2::Error::from_str(&e.to_string()))?;
                initial_commit(&repo, author)?;
                repo
            }
        };
        drop(repo);
        let (tx, rx) = mpsc::channel();
        let last_error = Arc::new(Mutex::new(None));
        let thread_dir = dir.to_path_buf();
        let errs = last_error.clone();
        std::thread::Builder::new()
            .name("git-audit".into())
            .spawn(move || run(thread_dir, rx, errs))
            .map_err(|e| git2::Error::from_str(&e.to_string()))?;
        Ok(GitAudit {
            dir: dir.to_path_buf(),
            tx,
            last_error,
        })
    }

    pub fn record(&self, r: Record) -> Result<(), AuditError> {
        self.tx
            .send(Job::Record(r))
            .map_err(|_| AuditError::Stopped)
    }

    /// Waits until everything recorded so far is committed.
    pub fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Job::Flush(tx))
            .map_err(|_| AuditError::Stopped)?;
        rx.recv().map_err(|_| AuditError::Stopped)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The commits that changed `file`, newest first.
    pub fn history(&self, id: &MachineId, file: &str) -> Result<Vec<HistoryEntry>, AuditError> {
        self.flush()?;
        let repo = Repository::open(&self.dir)?;
        let mut walk = repo.revwalk()?;
        walk.push_head()?;
        let mut out = Vec::new();
        let path = Path::new(file);
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
            let prefix = format!("{id}: ");
            let msg = commit.message().unwrap_or("");
            let message = msg
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| msg.lines().next().unwrap_or(""))
                .to_string();
            let sig = commit.author();
            out.push(HistoryEntry {
                commit: commit.id().to_string(),
                author: sig.name().unwrap_or("").to_string(),
                time: OffsetDateTime::from_unix_timestamp(sig.when().seconds())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                message,
                fields: changed_fields(before.map(|b| b.1), now.map(|b| b.1)),
            });
        }
        Ok(out)
    }
}

fn blob_of(repo: &Repository, tree: &git2::Tree, path: &Path) -> Option<(git2::Oid, Vec<u8>)> {
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
    let name = if author.trim().is_empty() {
        "mayu"
    } else {
        author
    };
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
    repo.commit(Some("HEAD"), &sig, &sig, "inventory created", &tree, &[])?;
    Ok(())
}

fn run(dir: PathBuf, rx: mpsc::Receiver<Job>, errors: Arc<Mutex<Option<String>>>) {
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        let first = match first {
            Job::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Job::Record(r) => r,
        };
        // Group what is already queued from the same author: one commit, every change named.
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Job::Record(r)) if r.author == group[0].author => group.push(r),
                Ok(other) => {
                    pending = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        if let Err(e) = commit_group(&dir, &group) {
            tracing::error!(error = %e, "git audit commit failed");
            *errors.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }
}

fn commit_group(dir: &Path, group: &[Record]) -> Result<(), git2::Error> {
    let repo = Repository::open(dir)?;
    let mut index = repo.index()?;
    for r in group {
        let p = Path::new(&r.file);
        if r.present {
            index.add_path(p)?;
        } else if index.get_path(p, 0).is_some() {
            index.remove_path(p)?;
        }
    }
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let lines: Vec<String> = group
        .iter()
        .map(|r| format!("{}: {}", r.id, r.what))
        .collect();
    let message = if lines.len() == 1 {
        lines[0].clone()
    } else {
        format!(
            "{} changes by {}\n\n{}",
            lines.len(),
            group[0].author,
            lines.join("\n")
        )
    };
    let sig = signature(&group[0].author)?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, &message, &tree, &parents)?;
    Ok(())
}
