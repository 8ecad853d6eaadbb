//! Enrolment over the API and `mayuctl` (issue 14 item 4): ignored DHCP clients listed with
//! what they sent, `POST /api/v1/machines` / `mayuctl add` making a MAC a machine (profile,
//! hostname, rack; quota respected; one audit commit by the caller), and every refusal a 4xx
//! with its reason that changes nothing. The real dnsmasq side (ignored → enrolled →
//! answered) is `tests/dnsmasq.rs::an_ignored_client_is_listed_then_enrolled_and_answered`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod api_fixture;

use std::process::Output;

use api_fixture::{start, Fixture};
use mayu::machine::{AssignedBy, Mac, State};
use reqwest::StatusCode;
use serde_json::{json, Value};

const NEW_MAC: &str = "52:54:00:bb:00:01";

fn mayuctl(f: &Fixture, token: &str, args: &[&str]) -> Output {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
        .env_remove("MAYU_TOKEN")
        .env_remove("MAYU_TOKEN_FILE")
        .args(["--server", &f.url(""), "--token", token])
        .args(args)
        .output()
        .unwrap();
    f.engine.flush().unwrap();
    o
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

async fn post(f: &Fixture, token: &str, body: Value) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(f.url("/api/v1/machines"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v = resp.json().await.unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_mac_is_listed_then_enrolled_into_a_profile() {
    let f = start(false).await;
    let mac: Mac = NEW_MAC.parse().unwrap();
    let empty = ok(&mayuctl(&f, &f.reader, &["ignored", "--json"]));
    assert_eq!(serde_json::from_str::<Value>(&empty).unwrap(), json!([]));

    // What the dnsmasq supervisor records for each ignored DHCP message.
    let vendor = "HTTPClient:Arch:00016:UNDI:003001";
    f.engine
        .note_ignored(mac, Some(vendor.into()), Some("mayu0".into()));
    f.engine.note_ignored(mac, None, None);
    let table = ok(&mayuctl(&f, &f.reader, &["ignored"]));
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("MAC") && header.contains("VENDOR CLASS"),
        "{table}"
    );
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.contains(NEW_MAC) && row.contains(vendor) && row.contains("mayu0"),
        "{table}"
    );
    let v: Value =
        serde_json::from_str(&ok(&mayuctl(&f, &f.reader, &["ignored", "--json"]))).unwrap();
    assert_eq!(v[0]["count"], 2, "{v}");

    // A read-only token cannot enrol.
    let (s, v) = post(&f, &f.reader, json!({"mac": NEW_MAC})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    let commits = f.commits();
    let shown = ok(&mayuctl(
        &f,
        &f.admin,
        &[
            "add",
            NEW_MAC,
            "--profile",
            "worker",
            "--hostname",
            "node-12",
            "--rack",
            "r4/12",
        ],
    ));
    assert!(
        shown.contains("node-12") && shown.contains("r4/12") && shown.contains("worker"),
        "{shown}"
    );
    let m = f.engine.by_mac(&mac).expect("enrolled");
    assert_eq!(m.profile.as_deref(), Some("worker"));
    assert_eq!(m.state, State::Configured);
    assert!(m.pinned);
    assert!(matches!(m.assigned_by, Some(AssignedBy::Operator(_))));
    assert_eq!(
        m.rack.as_ref().map(|r| (r.rack.as_str(), r.unit)),
        Some(("r4", Some(12)))
    );
    assert_eq!(f.commits(), commits + 1, "one enrolment, one audit commit");
    assert!(f.engine.ignored().is_empty(), "enrolled: no longer ignored");

    // Refusals: a 4xx with the reason, nothing changed.
    let before = f.engine.list().len();
    let (s, v) = post(&f, &f.admin, json!({"mac": NEW_MAC})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("already"), "{v}");
    let (s, v) = post(
        &f,
        &f.admin,
        json!({"mac": "52:54:00:bb:00:02", "profile": "worker"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "worker holds 1: {v}");
    assert!(v["detail"].as_str().unwrap().contains("full"), "{v}");
    let (s, v) = post(
        &f,
        &f.admin,
        json!({"mac": "52:54:00:bb:00:02", "profile": "nope"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = post(&f, &f.admin, json!({"mac": "not-a-mac"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("not a MAC address"),
        "{v}"
    );
    let (s, v) = post(
        &f,
        &f.admin,
        json!({"mac": "52:54:00:bb:00:02", "hostname": "no_underscores"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(f.engine.list().len(), before);
    let o = mayuctl(&f, &f.admin, &["add", "zz:zz"]);
    assert_eq!(o.status.code(), Some(2), "a bad MAC is a usage error");

    // Past the quota only when asked; the API answers 201 with where the machine lives.
    let (s, v) = post(
        &f,
        &f.admin,
        json!({"mac": "52:54:00:bb:00:02", "profile": "worker", "force": true}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["id"], "52-54-00-bb-00-02", "{v}");
    assert!(v.get("token").is_none(), "{v}");
    f.stop().await;
}
