//! Several boot servers, one inventory (issue 16): two real mayu servers on one real
//! three-member etcd cluster (Debian's etcd, loopback, ports the OS picked).
//!
//! - 300 registrations split across the two servers at once fill the quotas exactly;
//! - an assignment made on server A appears on server B's event stream and API;
//! - stopping one etcd member changes nothing;
//! - both servers' git mirrors hold every change.

#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)] // tests stop at the first surprise

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mayu::events::EventKind;
use mayu::inventory::machine_key::MachineKey;
use support::etcd::Etcd;
use support::{Lab, Running};

const WAIT: Duration = Duration::from_secs(120);

fn lab(endpoints: &[String], name: &str) -> Lab {
    let cluster = format!(
        "cluster:\n  etcd: [{}]\n  name: {name}\n  prefix: /mayu-test\ntemplates_env:",
        endpoints.join(", ")
    );
    Lab::new(&[("templates_env:", &cluster)])
}

/// Polls `cond` until it holds; fails with `what` after [`WAIT`].
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The iPXE script server `r` hands machine `i` (serial `SN-M<i>`).
async fn script(client: &reqwest::Client, r: &Running, i: u32) -> String {
    client
        .get(r.url(&format!("/ipxe?mac={}&serial=SN-M{i}", mac(i))))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn mac(i: u32) -> String {
    format!("52:54:00:c1:{:02x}:{:02x}", i >> 8, i & 0xff)
}

/// Every audit line (`id: what (by author)`) in a mirror's git history.
fn audit_lines(lab: &Lab) -> HashSet<String> {
    let repo = git2::Repository::open(lab.path().join("inventory")).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    let mut lines = HashSet::new();
    for oid in walk {
        let c = repo.find_commit(oid.unwrap()).unwrap();
        for l in c.message().unwrap_or("").lines() {
            lines.insert(l.trim().to_string());
        }
    }
    lines
}

fn worker_count(engine: &mayu::Engine) -> usize {
    engine
        .list()
        .iter()
        .filter(|m| m.profile.as_deref() == Some("worker"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_share_one_inventory_with_exact_quotas() {
    const NAME: &str = "two_servers_share_one_inventory_with_exact_quotas";
    if support::etcd::missing(NAME) {
        return;
    }
    let _watchdog = support::watchdog(NAME, Duration::from_secs(600));
    let mut etcd = Etcd::start();
    let endpoints = etcd.endpoints();
    let (lab_a, lab_b) = (lab(&endpoints, "rack-a"), lab(&endpoints, "rack-b"));
    let a = Running::start(&lab_a).await;
    let b = Running::start(&lab_b).await;
    let client = reqwest::Client::new();

    // 300 machines at once, half asking server A, half server B.
    let mut asks = Vec::new();
    for i in 0..300u32 {
        let server = if i % 2 == 0 { a.url("") } else { b.url("") };
        let url = format!("{server}/ipxe?mac={}&serial=SN-C{i:03}&arch=x86_64", mac(i));
        let client = client.clone();
        asks.push(tokio::spawn(async move {
            let resp = client.get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }));
    }
    let mut answered = 0;
    for ask in asks {
        let (status, body) = ask.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("#!ipxe"), "{body}");
        answered += 1;
    }
    assert_eq!(answered, 300);

    // Both servers see all 300, and exactly the quota's 10 are workers: no interleaving of
    // the two servers' registrations over-fills the profile.
    until("both servers to hold 300 machines", || {
        a.engine.len() == 300 && b.engine.len() == 300
    })
    .await;
    until("the workers to settle on both", || {
        worker_count(&a.engine) == 10 && worker_count(&b.engine) == 10
    })
    .await;
    for m in a.engine.list() {
        let there = b.engine.get(&m.id).unwrap();
        assert_eq!(there.profile, m.profile, "{}", m.id);
        assert_eq!(there.state, m.state, "{}", m.id);
        // Each machine shows the server that saw it: even ones asked A, odd ones B.
        let i: u32 = m.serial.as_deref().unwrap()[4..].parse().unwrap();
        let expected = if i.is_multiple_of(2) {
            "rack-a"
        } else {
            "rack-b"
        };
        assert_eq!(there.seen_by.as_deref(), Some(expected), "{}", m.id);
    }

    // One machine key for the cluster: a token server A gave a machine is its token on B, and
    // B takes it (the machine's installed OS may call back through either).
    let seen_by_a = a.engine.list().into_iter().next().unwrap();
    let token = a.engine.get(&seen_by_a.id).unwrap().token;
    assert_eq!(b.engine.get(&seen_by_a.id).unwrap().token, token);
    let resp = client
        .get(b.url(&format!("/assignment?id={}&token={token}", seen_by_a.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let wrong = format!(
        "{}{}",
        if token.starts_with('0') { 1 } else { 0 },
        &token[1..]
    );
    let resp = client
        .get(b.url(&format!("/assignment?id={}&token={wrong}", seen_by_a.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "a wrong token stays refused");

    // An assignment on A appears on B's event stream, then in its API.
    let mut on_b = b.engine.bus().subscribe();
    let target = a
        .engine
        .list()
        .into_iter()
        .find(|m| m.profile.as_deref() == Some("discovery"))
        .unwrap();
    let resp = client
        .patch(format!("http://{}/api/v1/machines/{}", a.api, target.id))
        .bearer_auth(a.token())
        .json(&serde_json::json!({"profile": "control-plane"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, on_b.recv())
            .await
            .expect("B's event stream never showed A's assignment")
            .unwrap();
        if let EventKind::MachineChanged { machine, actor, .. } = &ev.kind {
            if machine.id == target.id && machine.profile.as_deref() == Some("control-plane") {
                assert_eq!(actor, "admin");
                break;
            }
        }
    }
    let resp = client
        .get(format!("http://{}/api/v1/machines/{}", b.api, target.id))
        .bearer_auth(b.token())
        .send()
        .await
        .unwrap();
    let m: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(m["profile"], "control-plane", "{m}");

    // The link to etcd is a service: members, leader, this server.
    let mut detail = String::new();
    let deadline = Instant::now() + WAIT;
    while !detail.contains("leader") {
        assert!(
            Instant::now() < deadline,
            "no cluster service on A: {detail}"
        );
        let services: serde_json::Value = client
            .get(format!("http://{}/api/v1/services", a.api))
            .bearer_auth(a.token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(c) = services
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "cluster")
        {
            assert_eq!(c["status"], "running", "{c}");
            detail = c["detail"].as_str().unwrap_or("").to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        detail.contains("3 members") && detail.contains("rack-a"),
        "{detail}"
    );

    // One etcd member down: registrations and assignments go on.
    etcd.stop_member(0);
    for i in 300..310u32 {
        let server = if i % 2 == 0 { a.url("") } else { b.url("") };
        let resp = client
            .get(format!("{server}/ipxe?mac={}&serial=SN-C{i:03}", mac(i)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    until("both servers to hold 310 machines", || {
        a.engine.len() == 310 && b.engine.len() == 310
    })
    .await;
    assert_eq!(worker_count(&a.engine), 10);

    // Both mirrors hold every change, whichever server made it.
    a.engine.flush().unwrap();
    b.engine.flush().unwrap();
    let (lines_a, lines_b) = (audit_lines(&lab_a), audit_lines(&lab_b));
    for m in a.engine.list() {
        let registered = |lines: &HashSet<String>| {
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{}: registered", m.id)))
        };
        assert!(registered(&lines_a), "A's mirror lacks {}", m.id);
        assert!(registered(&lines_b), "B's mirror lacks {}", m.id);
    }
    let assigned = format!("{}: assigned to control-plane", target.id);
    assert!(
        lines_a.iter().any(|l| l.starts_with(&assigned)),
        "{assigned}"
    );
    assert!(
        lines_b.iter().any(|l| l.starts_with(&assigned)),
        "{assigned}"
    );

    // B stops; A changes a machine meanwhile; B's restart replays that change into its
    // mirror as its own commit, as a running B would have.
    b.stop().await;
    let other = a
        .engine
        .list()
        .into_iter()
        .find(|m| m.profile.as_deref() == Some("discovery"))
        .unwrap();
    a.engine
        .assign(other.id.as_str(), "control-plane", "operator-a", false)
        .unwrap();
    // A second change on top: a sync of differences would keep only this one.
    a.engine
        .edit(
            other.id.as_str(),
            "operator-a",
            mayu::engine::Edit {
                notes: Some("moved while B was down".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let b = Running::start(&lab_b).await;
    until("B to hold A's changes made while it was down", || {
        b.engine
            .get(&other.id)
            .is_some_and(|m| m.notes == "moved while B was down")
    })
    .await;
    b.engine.flush().unwrap();
    let wanted = format!("{}: assigned to control-plane (on rack-a)", other.id);
    let deadline = Instant::now() + WAIT;
    while !audit_lines(&lab_b).iter().any(|l| l.starts_with(&wanted)) {
        assert!(
            Instant::now() < deadline,
            "B's mirror lacks `{wanted}`: {:?}",
            audit_lines(&lab_b)
                .into_iter()
                .filter(|l| l.starts_with(other.id.as_str()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    a.stop().await;
    b.stop().await;
}

/// A server (re)started while etcd is unreachable serves what its mirror holds, holds new
/// machines, and loads etcd once it answers; a new server started then joins the cluster's
/// machine key once etcd answers. A machine key in etcd no server can use stops a start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_started_without_etcd_serves_its_mirror_and_catches_up() {
    const NAME: &str = "a_server_started_without_etcd_serves_its_mirror_and_catches_up";
    if support::etcd::missing(NAME) {
        return;
    }
    let _watchdog = support::watchdog(NAME, Duration::from_secs(600));
    let mut etcd = Etcd::start();
    let endpoints = etcd.endpoints();
    let lab_a = lab(&endpoints, "rack-a");
    let client = reqwest::Client::new();
    let a = Running::start(&lab_a).await;
    let resp = client
        .get(a.url(&format!("/ipxe?mac={}&serial=SN-M1", mac(1))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let known = a.engine.find(&mac(1)).unwrap();
    a.engine.flush().unwrap();
    a.stop().await;

    for i in 0..3 {
        etcd.stop_member(i);
    }
    let a = Running::start(&lab_a).await;
    assert_eq!(
        a.engine.get(&known.id).map(|m| m.profile),
        Some(known.profile.clone()),
        "the mirror's machine is known"
    );
    let body = script(&client, &a, 1).await;
    assert!(body.contains("kernel"), "its profile's script: {body}");
    let body = script(&client, &a, 2).await;
    assert!(body.contains("inventory is unreachable"), "held: {body}");
    assert!(a.engine.find(&mac(2)).is_none());
    // A new server that never reached etcd: it starts on a key of its own.
    let lab_b = lab(&endpoints, "rack-b");
    let b = Running::start(&lab_b).await;
    let own_key = MachineKey::open(&lab_b.path().join("inventory")).unwrap();

    etcd.start_members(&[0, 1, 2]);
    // Once etcd answers, B joins the cluster's key: its tokens are A's, and one its own key
    // gave stays valid.
    until("B's token for A's machine to be A's", || {
        b.engine.get(&known.id).map(|m| m.token) == a.engine.get(&known.id).map(|m| m.token)
    })
    .await;
    let on_b = b.engine.get(&known.id).unwrap();
    assert!(b
        .engine
        .accepts_token(&on_b, &own_key.token(known.id.as_str())));
    assert!(!b.engine.accepts_token(&on_b, "0000"));
    b.stop().await;
    // The new machine asks again (its hold loop) until etcd takes it.
    let deadline = Instant::now() + WAIT;
    loop {
        let body = script(&client, &a, 2).await;
        if !body.contains("unreachable") && a.engine.find(&mac(2)).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never registered after etcd returned: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.stop().await;

    // A key in etcd no server can use stops a start (its tokens would differ), and says why.
    etcd.etcdctl(&["put", "/mayu-test/machine-key", "not-a-key"]);
    let lab_c = lab(&endpoints, "rack-c");
    let err = mayu::Engine::open(lab_c.config())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("/mayu-test/machine-key") && err.contains("not a machine key"),
        "{err}"
    );
}
