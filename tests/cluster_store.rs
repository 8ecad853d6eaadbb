//! `mayu::cluster::store` against a real 3-member etcd cluster on loopback
//! (`tests/support/etcd.rs`): records round-trip, seats are taken by exactly one of two
//! racing transactions, a watch sees another client's writes, one member down changes
//! nothing, every member down is `Unavailable` (not a hang), live servers come and go.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::time::Duration;

use mayu::cluster::{
    ChangeInfo, Check, ClusterError, MachineRecord, Op, Revision, Seat, ServerInfo, Store,
    WatchEvent,
};
use mayu::config::ClusterConfig;
use mayu::machine::{Machine, MachineId};
use support::etcd::{missing, Etcd, EtcdTls};

/// Guards against a hang only (the store bounds every call itself); no speed is asserted.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn config(endpoints: Vec<String>, name: &str) -> ClusterConfig {
    ClusterConfig {
        etcd: endpoints,
        name: name.into(),
        prefix: "/mayu-test".into(),
        tls: None,
    }
}

async fn store(etcd: &Etcd, name: &str) -> Store {
    Store::connect(&config(etcd.endpoints(), name))
        .await
        .unwrap()
}

/// A fresh cluster and two servers' stores on it, `rack-a` and `rack-b`; `None` (`test` is
/// not run) where etcd is missing.
async fn racks(test: &str) -> Option<(Etcd, Store, Store)> {
    if missing(test) {
        return None;
    }
    let etcd = Etcd::start();
    let a = store(&etcd, "rack-a").await;
    let b = store(&etcd, "rack-b").await;
    Some((etcd, a, b))
}

fn machine(id: &str, profile: Option<&str>) -> Machine {
    let mut m = Machine::new(
        id.parse::<MachineId>().unwrap(),
        String::new(),
        time::OffsetDateTime::now_utc(),
    );
    m.profile = profile.map(str::to_string);
    m
}

fn record(m: Machine, server: &str) -> MachineRecord {
    MachineRecord {
        machine: m,
        change: ChangeInfo::now("test", "registered", server),
    }
}

fn seat(profile: &str, index: u32) -> Seat {
    Seat {
        profile: profile.into(),
        index,
    }
}

/// `r`'s machine stands at `revision` (0: it is new).
fn at(r: &MachineRecord, revision: Revision) -> Check {
    Check::MachineAt {
        id: r.machine.id.clone(),
        revision,
    }
}

fn put(r: &MachineRecord) -> Op {
    Op::PutMachine(Box::new(r.clone()))
}

/// `r`'s machine takes `seat`.
fn take(r: &MachineRecord, seat: Seat) -> Op {
    Op::TakeSeat {
        seat,
        id: r.machine.id.clone(),
    }
}

/// Frees `seat` if `id` holds it.
async fn free_seat(s: &Store, seat: Seat, id: MachineId) -> Result<Revision, ClusterError> {
    let held = Check::SeatHeldBy {
        seat: seat.clone(),
        id,
    };
    s.txn(&[held], &[Op::FreeSeat(seat)]).await
}

/// Writes `r` as a new machine.
async fn create(s: &Store, r: &MachineRecord) -> Result<Revision, ClusterError> {
    s.txn(&[at(r, 0)], &[put(r)]).await
}

/// Writes `r` as a new machine holding `seat`, if the seat is free.
async fn create_seated(s: &Store, r: &MachineRecord, seat: Seat) -> Result<Revision, ClusterError> {
    s.txn(
        &[at(r, 0), Check::SeatFree(seat.clone())],
        &[put(r), take(r, seat)],
    )
    .await
}

async fn guarded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, f)
        .await
        .expect("hung past the guard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_and_seats_are_taken_once() {
    let Some((_etcd, a, b)) = racks("records_round_trip_and_seats_are_taken_once").await else {
        return;
    };

    // A new machine with a seat: one transaction.
    let r1 = record(machine("sn00001", Some("worker")), "rack-a");
    let rev = create_seated(&a, &r1, seat("worker", 0)).await.unwrap();

    let snap = b.load().await.unwrap();
    assert!(snap.revision >= rev);
    assert_eq!(snap.machines, vec![(r1.clone(), rev)]);
    assert_eq!(snap.seats, vec![(seat("worker", 0), r1.machine.id.clone())]);
    assert!(snap.problems.is_empty(), "{:?}", snap.problems);
    assert_eq!(
        b.machine(&r1.machine.id).await.unwrap(),
        Some((r1.clone(), rev))
    );

    // Written again at a stale revision: a conflict naming the machine, nothing written.
    let mut changed = r1.clone();
    changed.machine.notes = "stale".into();
    let err = b.txn(&[at(&r1, 0)], &[put(&changed)]).await.unwrap_err();
    match &err {
        ClusterError::Conflict { failed, .. } => assert_eq!(failed, &vec![at(&r1, 0)]),
        other => panic!("not a conflict: {other}"),
    }
    assert!(err.to_string().contains("sn00001"), "{err}");
    assert_eq!(
        b.machine(&r1.machine.id).await.unwrap(),
        Some((r1.clone(), rev))
    );

    // At its revision it goes through.
    let rev2 = b.txn(&[at(&r1, rev)], &[put(&changed)]).await.unwrap();
    assert!(rev2 > rev);

    // Two servers race for the same seat with two new machines: exactly one wins.
    let race = |s: Store, id: &'static str| async move {
        let r = record(machine(id, Some("worker")), s.name());
        create_seated(&s, &r, seat("worker", 1)).await
    };
    let (ra, rb) = guarded(async {
        tokio::join!(
            tokio::spawn(race(a.clone(), "sn00002")),
            tokio::spawn(race(b.clone(), "sn00003"))
        )
    })
    .await;
    let results = [ra.unwrap(), rb.unwrap()];
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    let lost = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    match lost {
        ClusterError::Conflict { failed, .. } => {
            assert_eq!(failed, &vec![Check::SeatFree(seat("worker", 1))])
        }
        other => panic!("the loser is no conflict: {other}"),
    }
    let (seats, _) = a.seats().await.unwrap();
    assert_eq!(seats.len(), 2, "{seats:?}");
    let snap = a.load().await.unwrap();
    assert_eq!(
        snap.machines.len(),
        2,
        "only the winner's machine was written"
    );

    // Giving a seat up: compared to hold the machine.
    let wrong = free_seat(&a, seat("worker", 0), "sn99999".parse().unwrap()).await;
    assert!(
        matches!(wrong, Err(ClusterError::Conflict { .. })),
        "{wrong:?}"
    );
    free_seat(&a, seat("worker", 0), r1.machine.id.clone())
        .await
        .unwrap();
    assert_eq!(a.seats().await.unwrap().0.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_another_servers_writes_in_order() {
    let Some((etcd, a, b)) = racks("a_watch_sees_another_servers_writes_in_order").await else {
        return;
    };
    let snap = a.load().await.unwrap();
    let mut watch = a.watch(snap.revision + 1).await.unwrap();

    let r = record(machine("sn00010", Some("worker")), "rack-b");
    let rev = b
        .txn(&[at(&r, 0)], &[put(&r), take(&r, seat("worker", 3))])
        .await
        .unwrap();
    let rev2 = b
        .txn(
            &[at(&r, rev)],
            &[
                Op::DeleteMachine(r.machine.id.clone()),
                Op::FreeSeat(seat("worker", 3)),
            ],
        )
        .await
        .unwrap();

    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(guarded(watch.next()).await.unwrap());
    }
    assert_eq!(
        seen,
        vec![
            WatchEvent::Machine {
                record: Box::new(r.clone()),
                revision: rev
            },
            WatchEvent::SeatTaken {
                seat: seat("worker", 3),
                id: r.machine.id.clone(),
                revision: rev
            },
            WatchEvent::MachineDeleted {
                id: r.machine.id.clone(),
                revision: rev2
            },
            WatchEvent::SeatFreed {
                seat: seat("worker", 3),
                revision: rev2
            },
        ]
    );
    assert_eq!(seen[0].revision(), rev);
    assert_eq!(seen[0].clone(), seen[0]);
    match &seen[0] {
        WatchEvent::Machine { record, .. } => assert_eq!(record.change.server, "rack-b"),
        other => panic!("{other:?}"),
    }

    // A compacted start revision is its own error: reload.
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(etcd.endpoints().join(","))
        .args(["compact", &rev2.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // etcd creates the watch, then cancels it: the first `next` says so.
    let compacted = match a.watch(snap.revision + 1).await {
        Err(e) => e,
        Ok(mut w) => guarded(w.next()).await.unwrap_err(),
    };
    match compacted {
        ClusterError::Compacted {
            requested,
            compacted,
        } => {
            assert_eq!(requested, snap.revision + 1);
            assert_eq!(compacted, rev2);
        }
        e => panic!("not compacted: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_down_changes_nothing_all_down_is_unavailable() {
    if missing("one_member_down_changes_nothing_all_down_is_unavailable") {
        return;
    }
    let mut etcd = Etcd::start();
    let a = store(&etcd, "rack-a").await;

    let members = a.members().await.unwrap();
    let mut names: Vec<_> = members.iter().map(|m| m.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["m0", "m1", "m2"]);
    let status = guarded(a.status()).await;
    assert!(status.healthy(), "{status:?}");
    assert!(status.leader.is_some(), "{status:?}");
    assert!(members.iter().any(|m| Some(m.id) == status.leader));
    assert!(
        status.endpoints.iter().all(|e| e.health.is_ok()),
        "{status:?}"
    );

    let mut watch = a.watch(a.load().await.unwrap().revision + 1).await.unwrap();

    // Member 0 down: reads, writes and a watch on the others carry on.
    etcd.stop_member(0);
    let r = record(machine("sn00020", None), "rack-a");
    let rev = guarded(create(&a, &r)).await.unwrap();
    let snap = guarded(a.load()).await.unwrap();
    assert_eq!(snap.machines, vec![(r.clone(), rev)]);
    // The watch may have been on member 0: then it says so and is started again.
    let event = match guarded(watch.next()).await {
        Ok(e) => e,
        Err(e) => {
            assert!(e.is_unavailable(), "{e}");
            let mut again = guarded(a.watch(snap.revision)).await.unwrap();
            guarded(again.next()).await.unwrap()
        }
    };
    assert_eq!(
        event,
        WatchEvent::Machine {
            record: Box::new(r.clone()),
            revision: rev
        }
    );
    let status = guarded(a.status()).await;
    assert!(status.healthy(), "{status:?}");
    assert!(status.endpoints[0].health.is_err(), "{status:?}");
    let down = status.endpoints[0].health.as_ref().unwrap_err();
    assert!(down.contains(&etcd.endpoint(0)), "{down}");

    // It comes back and rejoins with its data.
    etcd.start_member(0);
    let one = Store::connect(&config(vec![etcd.endpoint(0)], "rack-c"))
        .await
        .unwrap();
    let snap = guarded(one.load()).await.unwrap();
    assert_eq!(snap.machines, vec![(r.clone(), rev)]);

    // Every member down: a bounded Unavailable naming the endpoints, never a hang.
    for i in 0..3 {
        etcd.stop_member(i);
    }
    let err = guarded(a.load()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains(&etcd.endpoint(1)), "{err}");
    let err = guarded(a.txn(&[at(&r, rev)], &[Op::DeleteMachine(r.machine.id.clone())]))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let err = guarded(a.watch(rev)).await.err().unwrap();
    assert!(err.is_unavailable(), "{err}");
    let status = guarded(a.status()).await;
    assert!(!status.healthy(), "{status:?}");
    assert!(status.endpoints.iter().all(|e| e.health.is_err()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_lives_under_a_lease() {
    let Some((etcd, a, b)) = racks("a_server_lives_under_a_lease").await else {
        return;
    };
    let mut watch = b.watch(b.load().await.unwrap().revision + 1).await.unwrap();
    let info = ServerInfo {
        version: "0.1.0".into(),
        boot: "10.77.0.1:4081".into(),
        api: "127.0.0.1:4080".into(),
        started: time::OffsetDateTime::now_utc(),
    };
    let lease = a.register_server(&info).await.unwrap();
    assert_eq!(lease.key(), "/mayu-test/servers/rack-a");
    assert_eq!(
        b.servers().await.unwrap(),
        vec![("rack-a".to_string(), info.clone())]
    );
    match guarded(watch.next()).await.unwrap() {
        WatchEvent::ServerUp {
            name, info: seen, ..
        } => {
            assert_eq!(name, "rack-a");
            assert_eq!(seen, info);
        }
        other => panic!("{other:?}"),
    }
    // The lease lost (as when it expired in a partition longer than its TTL): the keep-alive
    // notices and registers the server again, under a new lease.
    let leases = etcd.etcdctl(&["lease", "list"]);
    let id = leases.lines().nth(1).unwrap().trim().to_string();
    etcd.etcdctl(&["lease", "revoke", &id]);
    match guarded(watch.next()).await.unwrap() {
        WatchEvent::ServerDown { name, .. } => assert_eq!(name, "rack-a"),
        other => panic!("{other:?}"),
    }
    match guarded(watch.next()).await.unwrap() {
        WatchEvent::ServerUp { name, .. } => assert_eq!(name, "rack-a"),
        other => panic!("{other:?}"),
    }
    let again = etcd.etcdctl(&["lease", "list"]);
    assert!(!again.contains(&id), "a new lease, not {id}: {again}");
    lease.release().await.unwrap();
    match guarded(watch.next()).await.unwrap() {
        WatchEvent::ServerDown { name, .. } => assert_eq!(name, "rack-a"),
        other => panic!("{other:?}"),
    }
    assert!(b.servers().await.unwrap().is_empty());
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    // No etcd needed: a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Store::connect(&config(vec![format!("http://127.0.0.1:{port}")], "rack-a"))
        .await
        .unwrap();
    let err = guarded(s.load()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    // the cause is named, not only "transport error"
    assert!(err.to_string().contains("refused"), "{err}");
}

/// A CA, a certificate for 127.0.0.1 (the members', and etcdctl's as a client) and a client
/// certificate for mayu, as PEM files in `dir`: (the members' TLS, mayu's `cluster.tls`).
fn certificates(dir: &std::path::Path) -> (EtcdTls, mayu::config::ClusterTls) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mayu test etcd CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    };
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (cert, key) = leaf("etcd");
    let client = leaf("rack-a");
    (
        EtcdTls {
            ca: ca_file.clone(),
            cert,
            key,
        },
        mayu::config::ClusterTls {
            ca: ca_file,
            identity: Some(client),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() {
    if missing("tls_with_a_client_certificate") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (server, client) = certificates(certs.path());
    let etcd = Etcd::start_tls(server);
    assert!(etcd.endpoint(0).starts_with("https://"));
    let mut config = config(etcd.endpoints(), "rack-a");
    config.tls = Some(client.clone());
    let a = Store::connect(&config).await.unwrap();
    let r = record(machine("sn00030", None), "rack-a");
    let rev = guarded(create(&a, &r)).await.unwrap();
    assert_eq!(
        guarded(a.load()).await.unwrap().machines,
        vec![(r.clone(), rev)]
    );
    assert!(guarded(a.status()).await.healthy());

    // Without a client certificate etcd refuses the connection: never a hang.
    config.tls = Some(mayu::config::ClusterTls {
        identity: None,
        ..client.clone()
    });
    let anonymous = Store::connect(&config).await.unwrap();
    assert!(guarded(anonymous.load()).await.is_err());

    // A file that is no PEM is named.
    let bogus = certs.path().join("bogus.crt");
    std::fs::write(&bogus, "not a certificate").unwrap();
    config.tls = Some(mayu::config::ClusterTls {
        ca: bogus.clone(),
        identity: None,
    });
    let err = Store::connect(&config).await.unwrap_err();
    assert!(err.to_string().contains("bogus.crt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_reads_many_machines_in_pages_at_one_revision() {
    if missing("load_reads_many_machines_in_pages_at_one_revision") {
        return;
    }
    let etcd = Etcd::start();
    let a = store(&etcd, "rack-a").await;
    // More than two pages (500 keys each); etcd takes at most 128 operations per transaction.
    let mut last = 0;
    for chunk in 0..11u32 {
        let ops: Vec<Op> = (0..100u32)
            .map(|i| {
                let r = record(
                    machine(&format!("sn{:05}", chunk * 100 + i), None),
                    "rack-a",
                );
                Op::PutMachine(Box::new(r))
            })
            .collect();
        last = a.txn(&[], &ops).await.unwrap();
    }
    let snap = guarded(a.load()).await.unwrap();
    assert_eq!(snap.revision, last);
    assert_eq!(snap.machines.len(), 1100);
    let ids: Vec<String> = snap
        .machines
        .iter()
        .map(|(r, _)| r.machine.id.to_string())
        .collect();
    let want: Vec<String> = (0..1100).map(|i| format!("sn{i:05}")).collect();
    assert_eq!(ids, want);
}
