//! `mayu inventory push` / `pull` (`mayu::cluster::migrate`) against a real 3-member etcd
//! cluster on loopback: a local folder into etcd with seats for assigned machines, etcd into
//! another server's folder as audited commits; each run twice changes nothing the second
//! time; a machine that differs on the other side is reported, never overwritten.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use mayu::cluster::migrate::{pull, push, PUSH_ACTOR};
use mayu::cluster::{ChangeInfo, Check, MachineRecord, Op, Store};
use mayu::machine::Phase;
use support::etcd::{missing, Etcd};
use support::{reg, Lab};

/// `cluster:` for this etcd, as server `name`.
fn section(etcd: &Etcd, name: &str) -> String {
    format!(
        "cluster:\n  etcd: [{}]\n  name: {name}\n  prefix: /migrate\ntemplates_env:",
        etcd.endpoints().join(", ")
    )
}

/// A lab whose inventory holds `n` machines registered by the local engine (auto assignment
/// fills `worker`, quantity 10), then given a `cluster:` section as server `name`.
fn local_lab(etcd: &Etcd, name: &str, n: u32) -> Lab {
    let lab = Lab::new(&[]);
    let engine = lab.engine();
    for i in 0..n {
        engine.register(reg(i), Phase::FirstSeen).unwrap();
    }
    engine.flush().unwrap();
    drop(engine);
    let text = std::fs::read_to_string(lab.path().join("config.yaml"))
        .unwrap()
        .replacen("templates_env:", &section(etcd, name), 1);
    lab.write("config.yaml", &text);
    lab
}

async fn store(etcd: &Etcd, name: &str) -> Store {
    let config = mayu::config::ClusterConfig {
        etcd: etcd.endpoints(),
        name: name.into(),
        prefix: "/migrate".into(),
        tls: None,
    };
    Store::connect(&config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_copies_a_folder_once_with_seats_and_never_overwrites() {
    if missing("push_copies_a_folder_once_with_seats_and_never_overwrites") {
        return;
    }
    let etcd = Etcd::start();
    let lab = local_lab(&etcd, "rack-a", 5);
    let config = lab.config();
    let local = lab.engine_local_machines();
    assert_eq!(local.len(), 5);
    let workers = local
        .iter()
        .filter(|m| m.profile.as_deref() == Some("worker"))
        .count();
    assert!(workers > 0, "auto assignment put no machine in worker");

    let first = push(&config).await.unwrap();
    assert_eq!(first.summary("pushed"), "5 pushed, 0 already there");
    assert!(first.conflicts.is_empty(), "{first:?}");

    let s = store(&etcd, "check").await;
    let snap = s.load().await.unwrap();
    assert_eq!(snap.machines.len(), 5);
    for (r, _) in &snap.machines {
        assert_eq!(r.change.actor, PUSH_ACTOR);
        assert_eq!(r.change.what, "pushed from rack-a's folder");
        assert_eq!(r.change.server, "rack-a");
        let mine = local.iter().find(|m| m.id == r.machine.id).unwrap();
        assert_eq!(
            serde_json::to_value(&r.machine).unwrap(),
            serde_json::to_value(mine).unwrap()
        );
    }
    // One seat of `worker` for each machine assigned to it, all different.
    assert_eq!(snap.seats.len(), workers, "{:?}", snap.seats);
    let mut held: Vec<_> = snap.seats.iter().map(|(s, _)| s.clone()).collect();
    held.sort();
    held.dedup();
    assert_eq!(held.len(), workers);
    assert!(snap.seats.iter().all(|(s, id)| s.profile == "worker"
        && s.index < 10
        && local
            .iter()
            .any(|m| &m.id == id && m.profile.as_deref() == Some("worker"))));

    // Twice: nothing changes, not even etcd's revision.
    let second = push(&config).await.unwrap();
    assert_eq!(second.summary("pushed"), "0 pushed, 5 already there");
    assert_eq!(s.load().await.unwrap().revision, snap.revision);

    // A machine changed in etcd since: a conflict, etcd's record stays.
    let (r, rev) = snap.machines[0].clone();
    let mut changed = MachineRecord {
        machine: r.machine.clone(),
        change: ChangeInfo::now("operator", "notes", "rack-b"),
    };
    changed.machine.notes = "changed on rack-b".into();
    s.txn(
        &[Check::MachineAt {
            id: r.machine.id.clone(),
            revision: rev,
        }],
        &[Op::PutMachine(Box::new(changed.clone()))],
    )
    .await
    .unwrap();
    let third = push(&config).await.unwrap();
    assert_eq!(
        third.summary("pushed"),
        "0 pushed, 4 already there, 1 in conflict"
    );
    assert_eq!(third.conflicts[0].id, r.machine.id);
    assert!(
        third.conflicts[0].reason.contains("operator on rack-b"),
        "{:?}",
        third.conflicts
    );
    let (now, _) = s.machine(&r.machine.id).await.unwrap().unwrap();
    assert_eq!(now, changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_writes_etcds_machines_as_audited_commits_once() {
    if missing("pull_writes_etcds_machines_as_audited_commits_once") {
        return;
    }
    let etcd = Etcd::start();
    let a = local_lab(&etcd, "rack-a", 4);
    push(&a.config()).await.unwrap();

    // Server B: an empty folder.
    let b = Lab::new(&[("templates_env:", &section(&etcd, "rack-b"))]);
    let config = b.config();
    let first = pull(&config).await.unwrap();
    assert_eq!(first.summary("pulled"), "4 pulled, 0 already there");
    // The push took A's machine key up, the pull brought it down: the same tokens on both.
    let key =
        |lab: &Lab, file: &str| std::fs::read_to_string(lab.path().join("inventory").join(file));
    assert_eq!(
        key(&b, ".machine-key").unwrap(),
        key(&a, ".machine-key").unwrap()
    );
    assert!(
        key(&b, ".machine-key.previous").is_err(),
        "an empty folder had no key to keep"
    );
    let commits = b.commits();
    let pulled = b.engine_local_machines();
    let mut want = a.engine_local_machines();
    want.sort_by(|x, y| x.id.cmp(&y.id));
    let mut got = pulled.clone();
    got.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        serde_json::to_value(&want).unwrap()
    );
    // Each machine has its own audit record (a line of a commit, as the local backend writes
    // them), by the record's actor, saying where it was made.
    let repo = git2::Repository::open(b.path().join("inventory")).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    let mut lines = Vec::new();
    for oid in walk {
        let c = repo.find_commit(oid.unwrap()).unwrap();
        let message = c.message().unwrap_or_default().to_string();
        if message.contains("pushed from rack-a's folder (on rack-a)") {
            assert_eq!(c.author().name(), Some(PUSH_ACTOR), "{message}");
            lines.extend(
                message
                    .lines()
                    .filter(|l| l.ends_with(": pushed from rack-a's folder (on rack-a)"))
                    .map(str::to_string),
            );
        }
    }
    lines.sort();
    let expected: Vec<String> = got
        .iter()
        .map(|m| format!("{}: pushed from rack-a's folder (on rack-a)", m.id))
        .collect();
    assert_eq!(lines, expected);

    // Twice: nothing written, no commit.
    let second = pull(&config).await.unwrap();
    assert_eq!(second.summary("pulled"), "0 pulled, 4 already there");
    assert_eq!(b.commits(), commits);

    // A local file that differs from etcd: reported, not overwritten.
    let victim = &got[0];
    let file = b
        .path()
        .join("inventory")
        .join(format!("{}.json", victim.id));
    let mut edited: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    edited["notes"] = "local note".into();
    std::fs::write(&file, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
    let third = pull(&config).await.unwrap();
    assert_eq!(
        third.summary("pulled"),
        "0 pulled, 3 already there, 1 in conflict"
    );
    assert_eq!(third.conflicts[0].id, victim.id);
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(kept["notes"], "local note");
    // The only new commit is the audit noticing the hand edit when the folder was opened.
    let repo = git2::Repository::open(b.path().join("inventory")).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    assert!(
        b.commits() == commits
            || (b.commits() == commits + 1 && !head.message().unwrap().contains("rack-a")),
        "{:?}",
        head.message()
    );
}

/// The machine files of a lab's inventory, read as the local backend reads them.
trait LocalMachines {
    fn engine_local_machines(&self) -> Vec<mayu::machine::Machine>;
}

impl LocalMachines for Lab {
    fn engine_local_machines(&self) -> Vec<mayu::machine::Machine> {
        use mayu::inventory::Backend as _;
        let (machines, problems) =
            mayu::inventory::LocalBackend::open_read_only(&self.path().join("inventory"))
                .load()
                .unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        machines
    }
}
