//! The write path when the disk says no: a change that cannot be made durable is refused with
//! "storage full" and put back (memory, quotas and the console agree with the files again);
//! once space returns the same change goes through, and the audit holds only what was saved.
//! Root only (a small tmpfs plays the full disk); under CI=true a missing root is a failure.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use mayu::engine::{Edit, EngineError};
use mayu::events::EventKind;
use mayu::machine::Phase;
use support::{reg, Lab};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {out:?}");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` to the last byte with a dot file mayu ignores.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join(".filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    // Smaller writes take what a block write could not.
    while f.write_all(&[0u8; 64]).is_ok() {}
    let _ = f.sync_all();
    path
}

fn storage_full(r: Result<impl std::fmt::Debug, EngineError>) {
    match r {
        Err(EngineError::Inventory(e)) if e.storage_full() => {}
        other => panic!("expected a storage-full error, got {other:?}"),
    }
}

#[test]
fn a_full_disk_refuses_the_change_puts_it_back_and_loses_nothing_saved() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs root (a tmpfs plays the full disk)"
        );
        eprintln!("skipped: needs root");
        return;
    }
    let lab = Lab::new(&[]);
    let inventory = lab.path().join("inventory");
    let _mount = Tmpfs::mount(&inventory, "2m");
    let engine = lab.engine();
    let first = engine.register(reg(1), Phase::Ipxe).unwrap();
    // The audit's commit of that registration is done before the disk fills: the full disk
    // is then the only thing that changes.
    engine.flush().unwrap();
    let profile = first.profile.clone();
    let assigned_before: Vec<u32> = engine.profiles().iter().map(|p| p.assigned).collect();
    let (_, mut rx) = engine.subscribe();

    let filler = fill(&inventory);
    let edit = || Edit {
        hostname: Some("after-full".into()),
        ..Edit::default()
    };
    storage_full(engine.edit(first.id.as_str(), "ops", edit()));
    storage_full(engine.register(reg(2), Phase::Ipxe));

    // Put back: memory says what the files say.
    let now = engine.get(&first.id).unwrap();
    assert_eq!(now.hostname, None, "the refused edit was put back");
    assert_eq!(now.profile, profile);
    let second = mayu::machine::MachineId::derive(Some("SN00002"), None, None).unwrap();
    assert!(engine.get(&second).is_none(), "the refused machine is gone");
    let assigned_now: Vec<u32> = engine.profiles().iter().map(|p| p.assigned).collect();
    assert_eq!(assigned_now, assigned_before, "quota seats given back");
    assert!(!inventory.join(format!("{second}.json")).exists());

    // Every watcher was told: the change, then that it was put back.
    let mut told_back = false;
    let mut told_gone = false;
    while let Ok(ev) = rx.try_recv() {
        match &ev.kind {
            EventKind::MachineChanged {
                machine, change, ..
            } if machine.id == first.id && change.starts_with("not saved") => {
                assert_eq!(machine.hostname, None);
                told_back = true;
            }
            EventKind::MachineRetired { id, .. } if *id == second => told_gone = true,
            _ => {}
        }
    }
    assert!(told_back, "no event put the edit back");
    assert!(told_gone, "no event took the refused machine away");

    // Space again: the same changes go through, and the audit has each exactly once.
    std::fs::remove_file(filler).unwrap();
    let edited = engine.edit(first.id.as_str(), "ops", edit()).unwrap();
    assert_eq!(edited.hostname.as_deref(), Some("after-full"));
    engine.register(reg(2), Phase::Ipxe).unwrap();
    engine.flush().unwrap();
    let history = engine.history(first.id.as_str()).unwrap();
    let hostname_changes = history
        .iter()
        .filter(|h| h.message.contains("hostname after-full"))
        .count();
    assert_eq!(hostname_changes, 1, "{history:#?}");
    drop(engine);
    let engine = lab.engine();
    assert_eq!(
        engine.get(&first.id).unwrap().hostname.as_deref(),
        Some("after-full")
    );
    assert!(engine.get(&second).is_some());
}
