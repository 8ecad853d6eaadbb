//! What the engine tells about machines, through real services on loopback and the real
//! `mayuctl` binary. Stalls everywhere (issue 14 item 2): a machine stuck in one boot phase is
//! an event on the bus and the SSE stream, a `stall` in the API's machine JSON, a STALLED
//! column and a `--stalled` filter in `mayuctl list`, a gauge and a counter in `/metrics`
//! (checked by `promtool`), and all of it clears when the machine moves on. Timelines over the
//! API. And no noise: a held machine's polls and an unchanged lease table are not news.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use mayu::events::EventKind;
use mayu::machine::{Phase, State};
use support::{promtool_accepts, wait_for, Lab};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

const MAC: &str = "52:54:00:aa:00:01";
const ID: &str = "52-54-00-aa-00-01";

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

fn mayuctl(api: SocketAddr, token_file: &std::path::Path, args: &[&str]) -> String {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
        .env_remove("MAYU_TOKEN")
        .arg("--server")
        .arg(format!("http://{api}"))
        .arg("--token-file")
        .arg(token_file)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mayuctl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_reaches_events_sse_api_mayuctl_and_metrics_and_clears() {
    let lab = Lab::new(&[
        ("mode: full", "mode: off"),
        ("assignment: auto", "assignment: manual"),
        (
            "env: { role: worker }",
            "env: { role: worker }\n    stall_after: 1s",
        ),
    ]);
    let engine = lab.engine();
    let mut rx = engine.subscribe().1;
    let cancel = CancellationToken::new();
    let services = mayu::services::start(engine.clone(), cancel.clone())
        .await
        .unwrap();
    let (boot, api) = (services.boot_addr, services.api_addr);
    let token_file = services
        .admin_token_file
        .clone()
        .expect("first start writes the admin token");

    // An SSE client from the start, as an alerting bridge would be.
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
        .env_remove("MAYU_TOKEN")
        .arg("--server")
        .arg(format!("http://{api}"))
        .arg("--token-file")
        .arg(&token_file)
        .args(["watch", "--json"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut sse = BufReader::new(watch.stdout.take().unwrap()).lines();

    // Held (manual assignment): polling for an operator is not a stall.
    let (st, _) = get(boot, &format!("/ipxe?mac={MAC}"));
    assert_eq!(st, 200);
    engine.assign(ID, "worker", "tester", false).unwrap();
    // The profile's script: the machine is installing, in `ipxe`, and then goes quiet.
    let (st, body) = get(boot, &format!("/ipxe?mac={MAC}"));
    assert_eq!(st, 200, "{body}");
    assert_eq!(engine.find(ID).unwrap().state, State::Installing);

    let ev = wait_for(&mut rx, 30, |e| matches!(e.kind, EventKind::Stalled { .. })).await;
    let EventKind::Stalled { id, stall, profile } = &ev.kind else {
        unreachable!()
    };
    assert_eq!(id.as_str(), ID);
    assert_eq!(stall.phase, Phase::Ipxe);
    assert_eq!(stall.after_secs, 1);
    assert_eq!(profile.as_deref(), Some("worker"));

    // SSE: the same event, typed.
    let line = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let l = sse.next_line().await.unwrap().expect("watch ended");
            if l.contains("\"stalled\"") {
                return l;
            }
        }
    })
    .await
    .expect("the stall reaches the event stream");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["type"], "stalled", "{line}");
    assert_eq!(v["id"], ID, "{line}");
    assert_eq!(v["stall"]["phase"], "ipxe", "{line}");

    // API and mayuctl: the field, the column, the filter.
    let shown = mayuctl(api, &token_file, &["show", ID, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["stall"]["phase"], "ipxe", "{shown}");
    let table = mayuctl(api, &token_file, &["list", "--fields", "id,state,stalled"]);
    let header = table.lines().next().unwrap();
    assert!(header.contains("STALLED"), "{table}");
    let row = table.lines().find(|l| l.starts_with(ID)).unwrap();
    assert!(
        row.contains("installing") && row.contains("ipxe "),
        "{table}"
    );
    let only = mayuctl(api, &token_file, &["list", "--stalled", "--no-legend"]);
    assert_eq!(only.lines().count(), 1, "{only}");
    assert!(only.starts_with(ID), "{only}");

    // Its timeline over the API: the held poll and the profile's script, in order, boot 1.
    let text = mayuctl(api, &token_file, &["timeline", ID]);
    assert!(text.starts_with("boot 1"), "{text}");
    let held = text.find("held").expect("the held step");
    let served = text
        .find("profile worker script served")
        .expect("the profile step");
    assert!(held < served, "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&mayuctl(api, &token_file, &["timeline", ID, "--json"])).unwrap();
    assert_eq!(v["id"], ID, "{v}");
    assert_eq!(v["boots"][0]["steps"][0]["kind"], "ipxe", "{v}");

    // Metrics: the gauge and the counter, in a form Prometheus accepts.
    let (st, text) = get(api, "/metrics");
    assert_eq!(st, 200);
    promtool_accepts(&text);
    assert_eq!(
        sample(&text, "mayu_machines_stalled{profile=\"worker\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "mayu_machine_stalls_total{phase=\"ipxe\",profile=\"worker\"}"
        ),
        Some(1.0),
        "{text}"
    );

    // A change while stalled is written without the stall: live state, never in the machine's
    // file or the audit.
    let edited = engine
        .edit(
            ID,
            "tester",
            mayu::engine::Edit {
                notes: Some("check the cabling".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(edited.stall.is_some(), "a note does not move a machine on");
    engine.flush().unwrap();
    let file = std::fs::read_to_string(lab.path().join(format!("inventory/{ID}.json"))).unwrap();
    assert!(
        file.contains("check the cabling") && !file.contains("\"stall\""),
        "{file}"
    );

    // It moves on (reports boot-complete): the stall ends everywhere.
    engine.boot_complete(ID, "tester").unwrap();
    let ev = wait_for(&mut rx, 30, |e| {
        matches!(e.kind, EventKind::StallEnded { .. })
    })
    .await;
    let EventKind::StallEnded {
        id, phase, now_in, ..
    } = &ev.kind
    else {
        unreachable!()
    };
    assert_eq!(
        (id.as_str(), *phase, *now_in),
        (ID, Phase::Ipxe, Some(Phase::BootComplete))
    );
    let shown = mayuctl(api, &token_file, &["show", ID, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert!(v.get("stall").is_none(), "{shown}");
    let only = mayuctl(api, &token_file, &["list", "--stalled", "--no-legend"]);
    assert_eq!(only.trim(), "", "{only}");
    let (_, text) = get(api, "/metrics");
    assert_eq!(
        sample(&text, "mayu_machines_stalled{profile=\"worker\"}"),
        Some(0.0),
        "{text}"
    );

    drop(watch);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), services.stopped())
        .await
        .expect("services stop");
}

/// Every event published before a marker the engine announces now (the bus keeps order).
async fn until_marker(
    engine: &mayu::Engine,
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<mayu::events::Event>>,
    marker: &str,
) -> Vec<EventKind> {
    engine.say(mayu::events::LogLevel::Warn, marker.into());
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(&ev.kind, EventKind::Log { message, .. } if message == marker) {
            return seen;
        }
        seen.push(ev.kind.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_machine_polling_and_an_unchanged_lease_table_are_not_news() {
    let lab = Lab::new(&[
        ("mode: full", "mode: off"),
        ("assignment: auto", "assignment: manual"),
    ]);
    let engine = lab.engine();
    let cancel = CancellationToken::new();
    let services = mayu::services::start(engine.clone(), cancel.clone())
        .await
        .unwrap();
    let boot = services.boot_addr;
    let mut rx = engine.subscribe().1;
    for _ in 0..3 {
        let (st, body) = get(boot, &format!("/ipxe?mac={MAC}"));
        assert_eq!(st, 200);
        assert!(body.contains("waiting for an operator"), "{body}");
    }
    // Three polls at once: one timeline step counted three times, announced once (a burst of
    // the same step is announced at most once a second), one boot-step event.
    let t = engine.timeline(&ID.parse().unwrap());
    let steps = &t.current().unwrap().steps;
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0].count, 3);
    let seen = until_marker(&engine, &mut rx, "marker 1").await;
    let count = |f: fn(&EventKind) -> bool| seen.iter().filter(|k| f(k)).count();
    assert_eq!(count(|k| matches!(k, EventKind::BootStep { .. })), 1);
    assert_eq!(count(|k| matches!(k, EventKind::TimelineStep { .. })), 1);

    // The same lease table again (dnsmasq rewrites its file per DHCP message): no event.
    let lease = mayu::lease::Lease {
        mac: MAC.parse().unwrap(),
        ip: "10.77.0.150".parse().unwrap(),
        hostname: None,
        expires: None,
        client_id: None,
        machine: None,
    };
    engine.set_leases(vec![lease.clone()]);
    engine.set_leases(vec![lease.clone()]);
    engine.set_leases(vec![]);
    let tables: Vec<usize> = until_marker(&engine, &mut rx, "marker 2")
        .await
        .iter()
        .filter_map(|k| match k {
            EventKind::Leases { count } => Some(*count),
            _ => None,
        })
        .collect();
    assert_eq!(tables, vec![1, 0], "only changes are announced");
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), services.stopped())
        .await
        .expect("services stop");
}
