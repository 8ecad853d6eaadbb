//! The dnsmasq hostsfile follows the inventory from its own task: it lists every machine,
//! is not rewritten for changes it does not show (state, phases), and a write that fails is
//! the `hostsfile` service's problem until a retry succeeds.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::time::Duration;

use mayu::dnsmasq::hosts_sync::{self, Written};
use mayu::engine::Edit;
use mayu::events::EventKind;
use mayu::lease::ServiceStatus;
use mayu::machine::Phase;
use support::{reg, Lab};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

async fn until(rx: &mut watch::Receiver<Written>, what: &str, ok: impl Fn(&Written) -> bool) {
    let done = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|w| ok(w)))
        .await
        .map(|r| r.is_ok());
    assert!(
        done == Ok(true),
        "timed out waiting for {what}; now {:?}",
        *rx.borrow()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_lists_every_machine_and_ignores_changes_it_does_not_show() {
    let lab = Lab::new(&[]);
    let engine = lab.engine();
    engine.register(reg(1), Phase::Ipxe).unwrap();
    let path = lab.path().join("hosts");
    let cancel = CancellationToken::new();
    let mut written = hosts_sync::start(engine.clone(), path.clone(), cancel.clone()).await;
    assert_eq!(written.borrow().count, 1, "written before start returns");
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("52:54:00:00:00:01"));

    // A burst: every machine ends up in the file.
    let e = engine.clone();
    tokio::task::spawn_blocking(move || {
        for i in 2..=40 {
            e.register(reg(i), Phase::Ipxe).unwrap();
        }
    })
    .await
    .unwrap();
    until(&mut written, "40 machines", |w| w.count == 40).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("52:54:00:00:00:28"), "{text}");

    // A change the file does not show (state, phase times) writes nothing; a hostname does.
    let generation = written.borrow().generation;
    let (_, mut events) = engine.subscribe();
    let e = engine.clone();
    tokio::task::spawn_blocking(move || {
        e.boot_complete("sn00002", "ops").unwrap();
        e.edit(
            "sn00003",
            "ops",
            Edit {
                hostname: Some("node-3".into()),
                ..Edit::default()
            },
        )
        .unwrap();
    })
    .await
    .unwrap();
    until(&mut written, "the hostname", |w| w.generation > generation).await;
    assert_eq!(
        written.borrow().generation,
        generation + 1,
        "one write, for the hostname only"
    );
    assert!(std::fs::read_to_string(&path).unwrap().contains(",node-3"));
    // Both changes did happen (so the state change really was seen and ignored).
    let mut seen = 0;
    while let Ok(ev) = events.try_recv() {
        if matches!(ev.kind, EventKind::MachineChanged { .. }) {
            seen += 1;
        }
    }
    assert!(seen >= 2, "{seen} machine changes seen");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_a_service_problem_until_a_retry_succeeds() {
    let lab = Lab::new(&[]);
    let engine = lab.engine();
    engine.register(reg(1), Phase::Ipxe).unwrap();
    // The file's folder is a plain file: every write fails until it becomes a folder.
    let folder = lab.path().join("run");
    std::fs::write(&folder, "not a folder").unwrap();
    let (_, mut events) = engine.subscribe();
    let cancel = CancellationToken::new();
    let mut written = hosts_sync::start(engine.clone(), folder.join("hosts"), cancel.clone()).await;
    let failed = engine
        .services()
        .into_iter()
        .find(|s| s.name == hosts_sync::SERVICE)
        .expect("a hostsfile service after a failed write");
    assert_eq!(failed.status, ServiceStatus::Failed);
    let problem = failed.problem.expect("a problem with a reason");
    assert!(problem.reason.contains("cannot write"), "{problem:?}");

    std::fs::remove_file(&folder).unwrap();
    std::fs::create_dir(&folder).unwrap();
    until(&mut written, "the retried write", |w| w.count == 1).await;
    let back = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = events.recv().await.unwrap();
            if let EventKind::Service { name, status, .. } = &ev.kind {
                if name == hosts_sync::SERVICE && *status == ServiceStatus::Ok {
                    return;
                }
            }
        }
    })
    .await;
    assert!(back.is_ok(), "no `hostsfile ok` after the retry");
    cancel.cancel();
}
