//! The audit trail under the failures a data centre produces: stale git locks after a crash,
//! an operator's `git status` and git holding a lock, a truncated object after a power loss,
//! records journalled but never committed, an unreadable machine file, a second mayu on the
//! same folder. Each test fails when the property breaks.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mayu::engine::{Edit, Registration};
use mayu::machine::{Mac, Phase};
use support::Lab;

fn mac(n: u32) -> Mac {
    let b = n.to_be_bytes();
    Mac::from_octets([0x52, 0x54, b[0], b[1], b[2], b[3]])
}

fn register(engine: &mayu::Engine, n: u32) -> mayu::machine::Machine {
    engine
        .register(
            Registration {
                mac: Some(mac(n)),
                ..Default::default()
            },
            Phase::Ipxe,
        )
        .unwrap()
}

/// Every `id: what` line in the history, over all commits.
fn audit_lines(inventory: &Path) -> Vec<String> {
    let repo = git2::Repository::open(inventory).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    let mut lines = Vec::new();
    for oid in walk {
        let c = repo.find_commit(oid.unwrap()).unwrap();
        for l in c.message().unwrap().lines() {
            if l.contains(": ") && !l.starts_with("Mayu-Seq") {
                lines.push(l.to_string());
            }
        }
    }
    lines
}

/// Whether some audit line is about `id` and starts with `what`.
fn has(lines: &[String], id: &impl std::fmt::Display, what: &str) -> bool {
    let prefix = format!("{id}: {what}");
    lines.iter().any(|l| l.starts_with(&prefix))
}

/// The machine files HEAD holds, with their content.
fn head_files(inventory: &Path) -> BTreeSet<(String, String)> {
    let repo = git2::Repository::open(inventory).unwrap();
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    let mut out = BTreeSet::new();
    for e in tree.iter() {
        let name = e.name().unwrap().to_string();
        if name.ends_with(".json") {
            let blob = repo.find_blob(e.id()).unwrap();
            out.insert((name, String::from_utf8_lossy(blob.content()).into_owned()));
        }
    }
    out
}

fn disk_files(inventory: &Path) -> BTreeSet<(String, String)> {
    std::fs::read_dir(inventory)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        .map(|n| {
            let text = std::fs::read_to_string(inventory.join(&n)).unwrap();
            (n, text)
        })
        .collect()
}

#[test]
fn stale_locks_from_a_crash_are_cleared_and_commits_go_on() {
    let lab = Lab::new(&[]);
    let inv = lab.path().join("inventory");
    drop(lab.engine()); // creates the repository
    let git = inv.join(".git");
    let head_ref = git2::Repository::open(&inv)
        .unwrap()
        .head()
        .unwrap()
        .name()
        .unwrap()
        .to_string();
    // What a kill -9 in the middle of a commit leaves: nobody holds these.
    std::fs::write(git.join("index.lock"), "").unwrap();
    std::fs::write(git.join(format!("{head_ref}.lock")), "").unwrap();
    let engine = lab.engine();
    assert!(!git.join("index.lock").exists());
    assert!(!git.join(format!("{head_ref}.lock")).exists());
    let m = register(&engine, 1);
    engine.flush().unwrap();
    assert!(has(&audit_lines(&inv), &m.id, "registered"));
    let health = engine.audit_health().unwrap().borrow().clone();
    assert_eq!(health.status, mayu::lease::ServiceStatus::Ok);
    assert!(
        health
            .notes
            .iter()
            .any(|n| n.contains("removed stale git lock")),
        "{health:?}"
    );
}

#[test]
fn a_held_ref_lock_delays_commits_visibly_and_loses_nothing() {
    let lab = Lab::new(&[]);
    let inv = lab.path().join("inventory");
    let engine = lab.engine();
    register(&engine, 1);
    engine.flush().unwrap();
    let repo = git2::Repository::open(&inv).unwrap();
    let head_ref = repo.head().unwrap().name().unwrap().to_string();
    let lock = inv.join(".git").join(format!("{head_ref}.lock"));
    // Another git process is writing the branch: the lock exists and is held open.
    std::fs::write(&lock, "").unwrap();
    let held = std::fs::File::open(&lock).unwrap();
    let mut health = engine.audit_health().unwrap();
    let mut ids = Vec::new();
    for n in 2..12 {
        ids.push(register(&engine, n).id);
    }
    // The audit says it is behind, and why.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            health.wait_for(|h| h.status == mayu::lease::ServiceStatus::Retrying && h.pending > 0),
        )
        .await
        .expect("the audit reports the failure")
        .unwrap();
    });
    let h = engine.audit_health().unwrap().borrow().clone();
    assert!(h.failures >= 1, "{h:?}");
    assert!(h.last_error.is_some(), "{h:?}");
    let err = engine.flush_within(Duration::from_millis(50)).unwrap_err();
    assert!(err.to_string().contains("not yet committed"), "{err}");
    // The lock goes away: everything reaches git, nothing was dropped.
    drop(held);
    std::fs::remove_file(&lock).unwrap();
    engine.flush().unwrap();
    let lines = audit_lines(&inv);
    for id in &ids {
        assert!(has(&lines, id, "registered"), "{id} missing from {lines:?}");
    }
    assert_eq!(
        engine.audit_health().unwrap().borrow().status,
        mayu::lease::ServiceStatus::Ok
    );
    assert_eq!(head_files(&inv), disk_files(&inv));
}

#[test]
fn an_operators_git_status_never_costs_a_change() {
    let lab = Lab::new(&[]);
    let inv = lab.path().join("inventory");
    let engine = lab.engine();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (inv, stop) = (inv.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // `git status` refreshes and rewrites .git/index under index.lock.
                let out = Command::new("git")
                    .args(["-c", "safe.directory=*", "status", "--porcelain"])
                    .current_dir(&inv)
                    .env("GIT_CONFIG_NOSYSTEM", "1")
                    .env("HOME", &inv)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                runs += 1;
            }
            runs
        })
    };
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(register(&engine, n).id);
        if n % 20 == 0 {
            engine.flush().unwrap();
        }
    }
    engine.flush().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(poller.join().unwrap() > 0);
    let lines = audit_lines(&inv);
    for id in &ids {
        assert!(has(&lines, id, "registered"), "{id}");
    }
    assert_eq!(head_files(&inv), disk_files(&inv));
    // The operator's view agrees: nothing uncommitted.
    let out = Command::new("git")
        .args([
            "-c",
            "safe.directory=*",
            "status",
            "--porcelain",
            "--",
            "*.json",
        ])
        .current_dir(&inv)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", &inv)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn a_truncated_object_is_a_clear_error_at_start_not_a_hang() {
    let lab = Lab::new(&[]);
    let inv = lab.path().join("inventory");
    let m = {
        let engine = lab.engine();
        let m = register(&engine, 7);
        engine.flush().unwrap();
        m
    };
    let repo = git2::Repository::open(&inv).unwrap();
    let blob = repo
        .head()
        .unwrap()
        .peel_to_tree()
        .unwrap()
        .get_name(&format!("{}.json", m.id))
        .unwrap()
        .id();
    let hex = blob.to_string();
    let obj = inv.join(".git/objects").join(&hex[..2]).join(&hex[2..]);
    let bytes = std::fs::read(&obj).unwrap();
    std::fs::set_permissions(&obj, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&obj, &bytes[..bytes.len() / 2]).unwrap();
    // Bounded: a hang here is the failure.
    let config = lab.config();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            mayu::Engine::open(config)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    });
    let err = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("Engine::open returned")
        .unwrap_err();
    assert!(err.contains(&format!("blob {blob}")), "{err}");
    assert!(err.contains(&format!("{}.json", m.id)), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains("move it aside"), "{err}");
}

#[test]
fn journalled_records_git_never_took_are_committed_at_the_next_start() {
    let lab = Lab::new(&[]);
    let inv = lab.path().join("inventory");
    let engine = lab.engine();
    let kept = register(&engine, 1);
    engine.flush().unwrap();
    let repo = git2::Repository::open(&inv).unwrap();
    let head_ref = repo.head().unwrap().name().unwrap().to_string();
    let lock = inv.join(".git").join(format!("{head_ref}.lock"));
    std::fs::write(&lock, "").unwrap();
    let held = std::fs::File::open(&lock).unwrap();
    // Acknowledged while git cannot commit: only the journal has them.
    let acked: Vec<_> = (2..6).map(|n| register(&engine, n).id).collect();
    engine
        .edit(
            kept.id.as_str(),
            "ops",
            Edit {
                hostname: Some("node-1".into()),
                ..Default::default()
            },
        )
        .unwrap();
    // A crash: the process is gone without a flush (the thread stops with the engine).
    drop(engine);
    drop(held);
    std::fs::remove_file(&lock).unwrap();
    let engine = lab.engine();
    engine.flush().unwrap();
    let lines = audit_lines(&inv);
    for id in &acked {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{id}: registered")) && l.contains("(replayed)")),
            "{id}: {lines:?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{}: ", kept.id)) && l.contains("hostname")),
        "{lines:?}"
    );
    // The operator's edit keeps its author.
    let history = engine.history(kept.id.as_str()).unwrap();
    assert_eq!(history[0].author, "ops", "{history:?}");
    assert_eq!(head_files(&inv), disk_files(&inv));
}

#[test]
fn a_file_changed_outside_the_audit_is_committed_as_recovered() {
    let lab = Lab::new(&[]);
    let inv = lab.path().join("inventory");
    let m = {
        let engine = lab.engine();
        let m = register(&engine, 3);
        engine.flush().unwrap();
        m
    };
    let file = inv.join(format!("{}.json", m.id));
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("\"notes\": \"\"", "\"notes\": \"by hand\""),
    )
    .unwrap();
    let engine = lab.engine();
    engine.flush().unwrap();
    let lines = audit_lines(&inv);
    assert!(
        lines.contains(&format!("{}: recovered: changed outside the audit", m.id)),
        "{lines:?}"
    );
    assert_eq!(head_files(&inv), disk_files(&inv));
}

#[test]
fn an_unreadable_file_keeps_its_quota_seat_and_its_identity() {
    // worker takes 2; one of its machines has a file mayu cannot parse.
    let lab = Lab::new(&[
        ("quantity: 3", "quantity: 0"),
        ("quantity: 10", "quantity: 2"),
    ]);
    let inv = lab.path().join("inventory");
    let (a, b) = {
        let engine = lab.engine();
        let a = register(&engine, 1);
        let b = register(&engine, 2);
        assert_eq!(a.profile.as_deref(), Some("worker"));
        assert_eq!(b.profile.as_deref(), Some("worker"));
        engine.flush().unwrap();
        (a, b)
    };
    let file = inv.join(format!("{}.json", b.id));
    let text = std::fs::read_to_string(&file).unwrap();
    // Still JSON, but not a machine: a required field has the wrong type.
    let broken = text.replace("\"state\": \"configured\"", "\"state\": 42");
    assert_ne!(broken, text);
    std::fs::write(&file, &broken).unwrap();

    let engine = lab.engine();
    assert_eq!(engine.load_problems().len(), 1);
    let worker = engine
        .profiles()
        .into_iter()
        .find(|p| p.name == "worker")
        .unwrap();
    assert_eq!(worker.assigned, 2, "the unreadable machine's seat is held");
    // A new machine does not get that seat.
    let c = register(&engine, 3);
    assert_ne!(c.profile.as_deref(), Some("worker"));
    // The machine itself boots again: refused, and its file is not overwritten.
    let err = engine
        .register(
            Registration {
                mac: Some(mac(2)),
                ..Default::default()
            },
            Phase::Ipxe,
        )
        .unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), broken);
    assert!(engine.find(a.id.as_str()).is_some());
}

#[test]
fn one_writer_per_inventory_and_private_files() {
    let lab = Lab::new(&[]);
    let engine = lab.engine();
    let m = register(&engine, 9);
    let err = match mayu::Engine::open(lab.config()) {
        Ok(_) => panic!("a second writer opened the inventory"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!("in use by process {}", std::process::id())),
        "{err}"
    );
    // Reading beside the writer is fine.
    let reader = mayu::Engine::open_read_only(lab.config()).unwrap();
    assert!(reader.find(m.id.as_str()).is_some());
    let inv = lab.path().join("inventory");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&inv), 0o700);
    assert_eq!(mode(&inv.join(format!("{}.json", m.id))), 0o600);
    drop(engine);
    mayu::Engine::open(lab.config()).unwrap();
}

#[test]
fn temp_files_of_a_crashed_write_are_swept_at_start() {
    let lab = Lab::new(&[]);
    let inv = lab.path().join("inventory");
    drop(lab.engine());
    std::fs::write(inv.join(".sn-1.json.tmp.123.0"), "half").unwrap();
    drop(lab.engine());
    assert!(!inv.join(".sn-1.json.tmp.123.0").exists());
}

#[test]
fn machine_tokens_never_reach_files_or_git_and_old_tokens_keep_working() {
    let lab = Lab::new(&[]);
    let inv = lab.path().join("inventory");
    let (m, legacy_file) = {
        let engine = lab.engine();
        let m = register(&engine, 4);
        engine.flush().unwrap();
        let file = inv.join(format!("{}.json", m.id));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("token"), "{text}");
        assert!(!text.contains(&m.token));
        (m, file)
    };
    // Every blob in the history is free of the token; the key file is not tracked.
    let repo = git2::Repository::open(&inv).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    for oid in walk {
        let tree = repo.find_commit(oid.unwrap()).unwrap().tree().unwrap();
        for e in tree.iter() {
            assert_ne!(e.name(), Some(".machine-key"));
            let blob = repo.find_blob(e.id()).unwrap();
            assert!(!String::from_utf8_lossy(blob.content()).contains(&m.token));
        }
    }
    // The same key gives the same token after a restart.
    assert_eq!(lab.engine().find(m.id.as_str()).unwrap().token, m.token);

    // A file from an older mayu still carries its token: that token keeps working.
    let text = std::fs::read_to_string(&legacy_file).unwrap();
    let old = text.replacen('{', "{\n  \"token\": \"0123legacy\",", 1);
    std::fs::write(&legacy_file, old).unwrap();
    let engine = lab.engine();
    let again = engine.find(m.id.as_str()).unwrap();
    assert!(again.accepts_token("0123legacy"));
    assert!(again.accepts_token(&m.token));
    assert!(!again.accepts_token("0123legacY"));
    // Its next write drops the plain token from the file, keeping only its hash.
    engine
        .edit(
            m.id.as_str(),
            "ops",
            Edit {
                notes: Some("migrated".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let text = std::fs::read_to_string(&legacy_file).unwrap();
    assert!(!text.contains("0123legacy"), "{text}");
    assert!(text.contains("legacy_token_sha256"), "{text}");
    drop(engine);
    assert!(lab
        .engine()
        .find(m.id.as_str())
        .unwrap()
        .accepts_token("0123legacy"));
}

/// Tests read the audit with the `git` an operator runs, but never with the developer's own
/// configuration (`.cargo/config.toml` points git's global config at /dev/null and turns the
/// system one off): a pager, colours or a log format there must not change what they see.
#[test]
fn git_in_tests_runs_with_a_sandboxed_config() {
    assert_eq!(
        std::env::var("GIT_CONFIG_GLOBAL").as_deref(),
        Ok("/dev/null")
    );
    let out = Command::new("git")
        .args(["config", "--show-origin", "--list"])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(".gitconfig") && !text.contains("/etc/gitconfig"),
        "{text}"
    );
}
