//! The inventory: atomic machine files, one git commit per change with the right author,
//! exact quotas under concurrency, and start-up that skips a corrupt file and names it.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use mayu::engine::EngineError;
use mayu::inventory::files;
use mayu::machine::{Phase, State};
use support::{reg, Lab};

#[test]
fn an_interrupted_write_leaves_the_old_file_whole() {
    let lab = Lab::new(&[]);
    let engine = lab.engine();
    let m = engine.register(reg(1), Phase::Ipxe).unwrap();
    let path = files::machine_path(&lab.path().join("inventory"), &m.id);
    let old = std::fs::read(&path).unwrap();

    // Stage a new version but "crash" before the rename.
    let mut changed = m.clone();
    changed.hostname = Some("half-written".into());
    let staged =
        mayu::atomic::stage(&path, &files::encode(&changed).unwrap(), files::MODE).unwrap();
    std::mem::forget(staged); // a crash runs no destructor: the temp file stays behind
    assert_eq!(std::fs::read(&path).unwrap(), old, "old file untouched");
    let leftovers: Vec<_> = std::fs::read_dir(lab.path().join("inventory"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "the half-done write is a separate temp file"
    );

    // A restart loads the old version, whole, and ignores the temp file.
    drop(engine);
    let engine = lab.engine();
    let loaded = engine.find(m.id.as_str()).unwrap();
    assert_eq!(loaded.hostname, None);
    assert!(engine.load_problems().is_empty());
    assert_eq!(engine.len(), 1);
}

#[test]
fn each_change_is_one_commit_by_its_author() {
    let lab = Lab::new(&[("assignment: auto", "assignment: manual")]);
    let engine = lab.engine();
    engine.flush().unwrap();
    let base = lab.commits();
    let m = engine.register(reg(2), Phase::Ipxe).unwrap();
    engine.flush().unwrap();
    engine
        .assign(m.id.as_str(), "worker", "alice", false)
        .unwrap();
    engine.flush().unwrap();
    engine
        .request_reinstall(m.id.as_str(), "api-token-ci")
        .unwrap();
    engine.flush().unwrap();
    engine.retire(m.id.as_str(), "bob").unwrap();
    engine.flush().unwrap();
    assert_eq!(lab.commits(), base + 4);

    let h = engine.history(m.id.as_str()).unwrap();
    let got: Vec<(&str, &str)> = h
        .iter()
        .map(|e| (e.author.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("bob", "sn00002: retired"),
            ("api-token-ci", "sn00002: reinstall requested"),
            ("alice", "sn00002: assigned to worker"),
            ("sn00002", "sn00002: registered"),
        ]
    );
    assert!(
        h[2].fields.contains(&"profile".to_string()),
        "{:?}",
        h[2].fields
    );
    assert!(h[2].fields.contains(&"pinned".to_string()));
}

#[test]
fn a_burst_may_be_grouped_but_no_change_is_missing() {
    let lab = Lab::new(&[]);
    let engine = lab.engine();
    for i in 0..60 {
        engine.register(reg(100 + i), Phase::Ipxe).unwrap();
    }
    engine.flush().unwrap();
    let repo = git2::Repository::open(lab.path().join("inventory")).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    let mut lines = Vec::new();
    for oid in walk {
        let c = repo.find_commit(oid.unwrap()).unwrap();
        lines.extend(
            c.message()
                .unwrap()
                .lines()
                .filter(|l| l.contains(": registered"))
                .map(String::from),
        );
    }
    for i in 0..60 {
        let want = format!("sn{:05}: registered", 100 + i);
        assert!(lines.iter().any(|l| l.starts_with(&want)), "{want} missing");
    }
    for i in 0..60 {
        let id = format!("sn{:05}", 100 + i);
        assert_eq!(engine.history(&id).unwrap().len(), 1, "{id}");
    }
}

#[test]
fn quotas_are_exact_under_500_concurrent_registrations() {
    let lab = Lab::new(&[
        ("    quantity: 3\n", "    quantity: 7\n"),
        ("    selector: { memory_gib: \">=1\" }\n", ""),
        ("    quantity: 10\n", "    quantity: 11\n"),
    ]);
    let engine = lab.engine();
    let handles: Vec<_> = (0..500u32)
        .map(|i| {
            let e = engine.clone();
            std::thread::spawn(move || e.register(reg(1000 + i), Phase::Ipxe).unwrap())
        })
        .collect();
    let machines: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in engine.list() {
        *counts
            .entry(m.profile.clone().unwrap_or_default())
            .or_default() += 1;
    }
    assert_eq!(machines.len(), 500);
    assert_eq!(counts.get("control-plane"), Some(&7));
    assert_eq!(counts.get("worker"), Some(&11));
    assert_eq!(counts.get("discovery"), Some(&482));
    let p: HashMap<_, _> = engine
        .profiles()
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    assert_eq!(p["control-plane"].assigned, 7);
    assert_eq!(p["worker"].assigned, 11);
    // And the same after a restart, from the files.
    engine.flush().unwrap();
    drop(engine);
    let engine = lab.engine();
    let p: HashMap<_, _> = engine
        .profiles()
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    assert_eq!(p["control-plane"].assigned, 7);
    assert_eq!(p["worker"].assigned, 11);
}

#[test]
fn operators_pin_and_need_force_past_a_full_quota() {
    let lab = Lab::new(&[
        ("    quantity: 3\n", "    quantity: 1\n"),
        ("    selector: { memory_gib: \">=1\" }\n", ""),
    ]);
    let engine = lab.engine();
    let a = engine.register(reg(1), Phase::Ipxe).unwrap();
    let b = engine.register(reg(2), Phase::Ipxe).unwrap();
    assert_eq!(a.profile.as_deref(), Some("control-plane"));
    assert_eq!(b.profile.as_deref(), Some("worker"));
    let err = engine
        .assign(b.id.as_str(), "control-plane", "alice", false)
        .unwrap_err();
    assert!(matches!(err, EngineError::ProfileFull { .. }), "{err}");
    assert_eq!(
        engine.find(b.id.as_str()).unwrap().profile.as_deref(),
        Some("worker")
    );
    let m = engine
        .assign(b.id.as_str(), "control-plane", "alice", true)
        .unwrap();
    assert!(m.pinned);
    assert_eq!(m.state, State::Configured);
    let err = engine
        .assign(b.id.as_str(), "nope", "alice", false)
        .unwrap_err();
    assert!(err.to_string().contains("unknown profile `nope`"), "{err}");
    // Rules never move a pinned machine; unassign holds it.
    let m = engine.unassign(b.id.as_str(), "alice").unwrap();
    assert_eq!(m.profile, None);
    let m = engine.register(reg(2), Phase::Ipxe).unwrap();
    assert_eq!(m.profile, None, "held machines stay held");
    assert_eq!(m.state, State::Waiting);
}

#[test]
fn startup_skips_a_corrupt_file_and_names_it() {
    let lab = Lab::new(&[]);
    let engine = lab.engine();
    engine.register(reg(1), Phase::Ipxe).unwrap();
    engine.register(reg(2), Phase::Ipxe).unwrap();
    engine.flush().unwrap();
    drop(engine);
    let bad = lab.path().join("inventory/sn00002.json");
    std::fs::write(&bad, "{ this is not json").unwrap();
    let engine = lab.engine();
    assert_eq!(engine.len(), 1);
    let problems = engine.load_problems();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].file, bad);
    assert!(!problems[0].error.is_empty());
    assert_eq!(
        std::fs::read_to_string(&bad).unwrap(),
        "{ this is not json",
        "left untouched"
    );
}

#[tokio::test]
async fn a_late_subscriber_starts_from_a_snapshot_without_gaps() {
    let lab = Lab::new(&[]);
    let engine = lab.engine();
    engine.register(reg(1), Phase::Ipxe).unwrap();
    let (snap, mut rx) = engine.subscribe();
    assert_eq!(snap.machines.len(), 1);
    assert!(
        snap.machines[0].token.is_empty(),
        "snapshots never carry tokens"
    );
    let e2 = engine.clone();
    tokio::task::spawn_blocking(move || e2.register(reg(2), Phase::Ipxe).unwrap())
        .await
        .unwrap();
    let ev = rx.recv().await.unwrap();
    assert_eq!(ev.machine_id().unwrap().as_str(), "sn00002");
    let _ = Arc::strong_count(&ev);
}
