//! The real `mayuctl` binary against a server started on port 0: every subcommand, token
//! passing, exit codes, and the errors a person must be able to act on.
#![allow(clippy::unwrap_used)] // tests stop at the first surprise

mod api_fixture;

use std::process::Output;
use std::time::Duration;

use api_fixture::{start, Fixture};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

enum Tok<'a> {
    None,
    Flag(&'a str),
}

async fn ctl(f: &Fixture, tok: Tok<'_>, args: &[&str]) -> Output {
    ctl_at(&f.url(""), f, tok, args).await
}

/// [`ctl`] against another server (`url`) sharing the fixture's engine.
async fn ctl_at(url: &str, f: &Fixture, tok: Tok<'_>, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"));
    cmd.env_remove("MAYU_SERVER")
        .env_remove("MAYU_TOKEN")
        .env_remove("MAYU_TOKEN_FILE")
        .arg("--server")
        .arg(url);
    if let Tok::Flag(t) = tok {
        cmd.arg("--token").arg(t);
    }
    cmd.args(args);
    let o = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("mayuctl finishes")
        .unwrap();
    // One commit per change even when the audit thread could fold a quick burst together.
    f.engine.flush().unwrap();
    o
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out(o),
        err(o)
    );
    out(o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show() {
    let f = start(false).await;
    let admin = Tok::Flag(&f.admin);
    let text = ok(&ctl(&f, admin, &["list"]).await);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ID"), "{text}");
    assert!(
        lines[0].contains("PROFILE") && lines[0].contains("STATE"),
        "{text}"
    );
    assert_eq!(lines.len(), 4, "{text}");
    assert!(text.contains("52:54:00:00:00:01"), "{text}");

    let text = ok(&ctl(
        &f,
        Tok::Flag(&f.reader),
        &["list", "--no-legend", "--fields", "id,state,serial"],
    )
    .await);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["52-54-00-00-00-03", "waiting", "-"],
            vec!["sn-a1", "waiting", "SN-A1"],
            vec!["sn-a2", "waiting", "SN-A2"],
        ]
    );

    let text = ok(&ctl(&f, Tok::Flag(&f.reader), &["list", "--json", "-q", "sn-a2"]).await);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], "sn-a2");

    let o = ctl(&f, Tok::Flag(&f.reader), &["list", "--fields", "id,colour"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("colour") && err(&o).contains("available"),
        "{}",
        err(&o)
    );

    let text = ok(&ctl(&f, Tok::Flag(&f.reader), &["show", "52:54:00:00:00:02"]).await);
    assert!(text.contains("id:") && text.contains("sn-a2"), "{text}");
    assert!(
        text.contains("state:") && text.contains("waiting"),
        "{text}"
    );
    let text = ok(&ctl(&f, Tok::Flag(&f.reader), &["show", "sn-a2", "--json"]).await);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["serial"], "SN-A2");
    assert!(v.get("token").is_none());
    f.stop().await;
}

/// A stand-in for `ipmitool` that reports the chassis on. Written by a shell of its own, so no
/// process of this test ever holds the file open for writing when it is run.
fn fake_ipmitool(path: &std::path::Path) {
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("printf '#!/bin/sh\\necho \"Chassis Power is on\"\\n' > \"$1\" && chmod 755 \"$1\"")
        .arg("sh")
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_the_power_the_bmc_reported() {
    let f = start(false).await;
    let r = || Tok::Flag(&f.reader);
    ok(&ctl(
        &f,
        Tok::Flag(&f.admin),
        &["set", "sn-a1", "ipmi-addr", "10.1.0.1"],
    )
    .await);

    // The same engine behind a second API port with power control over the fake ipmitool.
    let ipmitool = f.dir.path().join("fake-ipmitool");
    fake_ipmitool(&ipmitool);
    let mut settings = mayu::power::PowerSettings::new(f.dir.path().join("bmc-secrets.yaml"));
    settings.ipmitool = ipmitool;
    let secrets: mayu::power::Secrets = serde_json::from_value(serde_json::json!({
        "default": {"user": "admin", "password": "secret"}
    }))
    .unwrap();
    let power = mayu::power::Power::with_secrets(f.engine.clone(), settings, secrets);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = mayu::api::router(f.state.clone().with_power(power));
    let server = tokio::spawn(mayu::api::serve(listener, router, f.cancel.clone()));

    let rows = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let fields = ["list", "--fields", "id,ipmiaddr,power"];
    // The table `fields` lists when sn-a1's BMC last reported `a1_power`.
    let power_table = |a1_power: &'static str| {
        vec![
            vec!["ID", "IPMI", "POWER"],
            vec!["52-54-00-00-00-03", "-", "-"],
            vec!["sn-a1", "10.1.0.1", a1_power],
            vec!["sn-a2", "-", "-"],
        ]
    };
    // Nothing checked yet: no power to show.
    let text = ok(&ctl_at(&url, &f, r(), &fields).await);
    assert_eq!(rows(&text), power_table("-"), "{text}");

    let text = ok(&ctl_at(&url, &f, Tok::Flag(&f.admin), &["power", "status", "sn-a1"]).await);
    assert!(text.starts_with("sn-a1: power on (checked "), "{text}");

    let text = ok(&ctl_at(&url, &f, r(), &fields).await);
    assert_eq!(rows(&text), power_table("on"), "{text}");
    // POWER is one of the default columns, the last.
    let text = ok(&ctl_at(&url, &f, r(), &["list"]).await);
    let table = rows(&text);
    assert_eq!(table[0][table[0].len() - 2..], ["IPMI", "POWER"], "{text}");
    let a1 = table.iter().find(|r| r[0] == "sn-a1").unwrap();
    assert_eq!(a1[a1.len() - 2..], ["10.1.0.1", "on"], "{text}");

    let text = ok(&ctl_at(&url, &f, r(), &["show", "sn-a1"]).await);
    let line = text.lines().find(|l| l.starts_with("power:")).unwrap();
    assert!(line.contains(" on (checked 20"), "{text}");
    let text = ok(&ctl_at(&url, &f, r(), &["show", "sn-a2"]).await);
    let line = text.lines().find(|l| l.starts_with("power:")).unwrap();
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), ["power:", "-"]);
    let v: Value = serde_json::from_str(&ok(
        &ctl_at(&url, &f, r(), &["show", "sn-a1", "--json"]).await
    ))
    .unwrap();
    assert_eq!(v["power"]["state"], "on");

    // The port without power control shows none.
    let text = ok(&ctl(&f, r(), &fields).await);
    assert!(rows(&text).iter().skip(1).all(|r| r[2] == "-"), "{text}");
    f.stop().await;
    tokio::time::timeout(WAIT, server)
        .await
        .expect("the second server stops with the first")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_subcommand() {
    let f = start(true).await;
    let a = || Tok::Flag(&f.admin);

    let text = ok(&ctl(&f, a(), &["assign", "sn-a1", "worker"]).await);
    assert_eq!(text.trim(), "sn-a1 assigned to worker");
    let o = ctl(&f, a(), &["assign", "sn-a2", "worker"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("full") && err(&o).contains("force"),
        "{}",
        err(&o)
    );
    let text = ok(&ctl(&f, a(), &["assign", "sn-a2", "worker", "--force"]).await);
    assert!(text.contains("(forced)"), "{text}");
    let text = ok(&ctl(&f, a(), &["unassign", "sn-a2"]).await);
    assert!(text.contains("unassigned"), "{text}");
    assert_eq!(f.engine.find("sn-a2").unwrap().profile, None);
    let text = ok(&ctl(&f, a(), &["release", "sn-a2"]).await);
    assert!(text.contains("released"), "{text}");
    assert!(!f.engine.find("sn-a2").unwrap().pinned);

    ok(&ctl(&f, a(), &["set", "sn-a1", "hostname", "node-1"]).await);
    ok(&ctl(&f, a(), &["set", "sn-a1", "ipmi-addr", "10.1.0.1"]).await);
    ok(&ctl(&f, a(), &["set", "sn-a1", "provider-id", "srv-77"]).await);
    ok(&ctl(&f, a(), &["set", "sn-a1", "rack", "R4/12"]).await);
    ok(&ctl(&f, a(), &["set", "sn-a1", "notes", "fan noise"]).await);
    ok(&ctl(&f, a(), &["set", "sn-a1", "state", "installing"]).await);
    let m = f.engine.find("sn-a1").unwrap();
    assert_eq!(m.hostname.as_deref(), Some("node-1"));
    assert_eq!(m.ipmi_addr.as_deref(), Some("10.1.0.1"));
    assert_eq!(m.provider_id.as_deref(), Some("srv-77"));
    assert_eq!(
        m.rack.as_ref().map(|r| (r.rack.as_str(), r.unit)),
        Some(("R4", Some(12)))
    );
    assert_eq!(m.notes, "fan noise");
    assert_eq!(m.state, mayu::machine::State::Installing);
    let o = ctl(&f, a(), &["set", "sn-a1", "colour", "blue"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = ctl(&f, a(), &["set", "sn-a1", "hostname", "bad_name!"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("not a hostname"), "{}", err(&o));

    ok(&ctl(&f, a(), &["override", "sn-a1", "vlan", "12"]).await);
    ok(&ctl(&f, a(), &["override", "sn-a1", "channel", "beta"]).await);
    let m = f.engine.find("sn-a1").unwrap();
    assert_eq!(m.overrides["vlan"], 12);
    assert_eq!(m.overrides["channel"], "beta");
    ok(&ctl(&f, a(), &["override", "sn-a1", "vlan", "--unset"]).await);
    assert!(!f
        .engine
        .find("sn-a1")
        .unwrap()
        .overrides
        .contains_key("vlan"));
    let o = ctl(&f, a(), &["override", "sn-a1", "vlan"]).await;
    assert_eq!(o.status.code(), Some(2));

    let text = ok(&ctl(&f, a(), &["boot-complete", "sn-a1"]).await);
    assert_eq!(text.trim(), "sn-a1 is running");
    let text = ok(&ctl(&f, a(), &["reinstall", "sn-a1"]).await);
    assert!(text.contains("install worker again"), "{text}");
    assert!(f.engine.find("sn-a1").unwrap().reinstall);

    let text = ok(&ctl(&f, a(), &["render", "sn-a1", "ignition"]).await);
    assert!(text.starts_with("ignition for sn-a1"), "{text}");

    let text = ok(&ctl(&f, a(), &["history", "sn-a1"]).await);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("COMMIT"), "{text}");
    assert!(
        lines[1].contains("admin") && lines[1].contains("reinstall requested"),
        "{text}"
    );
    let text = ok(&ctl(&f, a(), &["history", "sn-a1", "--json"]).await);
    let h: Value = serde_json::from_str(&text).unwrap();
    assert!(h.as_array().unwrap().len() >= 10);

    let text = ok(&ctl(&f, a(), &["retire", "sn-a1"]).await);
    assert!(text.starts_with("sn-a1 retired"), "{text}");
    assert!(f.engine.find("sn-a1").is_none());
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_leases_services() {
    let f = start(false).await;
    f.engine.assign("sn-a1", "worker", "t", false).unwrap();
    f.engine.set_leases(vec![mayu::lease::Lease {
        mac: "52:54:00:00:00:02".parse().unwrap(),
        ip: "10.77.0.102".parse().unwrap(),
        hostname: None,
        expires: None,
        client_id: None,
        machine: None,
    }]);
    f.engine
        .set_service("dnsmasq", mayu::lease::ServiceStatus::Running, 1, "pid 7");
    let r = || Tok::Flag(&f.reader);

    let text = ok(&ctl(&f, r(), &["profiles"]).await);
    let worker: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("worker"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        worker,
        vec!["worker", "1", "1", "1", "0", "100%", "-"],
        "{text}"
    );
    assert!(text.contains("unassigned machines: 2"), "{text}");
    let v: Value = serde_json::from_str(&ok(&ctl(&f, r(), &["profiles", "--json"]).await)).unwrap();
    assert_eq!(v["profiles"][1]["name"], "discovery");

    let text = ok(&ctl(&f, r(), &["leases"]).await);
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        vec!["52:54:00:00:00:02", "10.77.0.102", "-", "never", "sn-a2"]
    );
    let v: Value = serde_json::from_str(&ok(&ctl(&f, r(), &["leases", "--json"]).await)).unwrap();
    assert_eq!(v[0]["ip"], "10.77.0.102");

    let text = ok(&ctl(&f, r(), &["services"]).await);
    assert!(
        text.lines().nth(1).unwrap().starts_with("dnsmasq"),
        "{text}"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_one_line_per_event() {
    let f = start(false).await;
    // Resume from the newest event so nothing published after it can be missed, however long
    // the process takes to connect.
    let last = f.engine.bus().recent(1)[0].seq;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
        .env_remove("MAYU_SERVER")
        .env_remove("MAYU_TOKEN_FILE")
        .env("MAYU_TOKEN", &f.reader)
        .args(["--server", &f.url(""), "watch", "--count", "2"])
        .arg("--after")
        .arg(last.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    f.engine
        .assign("sn-a2", "discovery", "alice", false)
        .unwrap();
    f.engine
        .set_service("dnsmasq", mayu::lease::ServiceStatus::Running, 0, "");
    let o = tokio::time::timeout(WAIT, async { child.wait_with_output().await })
        .await
        .expect("watch stops after --count events")
        .unwrap();
    let text = ok(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with(&format!("{} ", last + 1)), "{text}");
    assert!(
        lines[0].ends_with("sn-a2: assigned to discovery (alice)"),
        "{text}"
    );
    assert!(lines[1].contains("dnsmasq running"), "{text}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_to_do() {
    let f = start(false).await;

    // Unreachable: name the URL that was tried.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let url = format!("http://127.0.0.1:{port}");
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
        .env_remove("MAYU_TOKEN")
        .env_remove("MAYU_TOKEN_FILE")
        .env("MAYU_SERVER", &url)
        .args(["list"])
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains(&format!("{url}/api/v1/machines")),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("cannot reach"), "{}", err(&o));

    // No token: say how to pass one.
    let o = ctl(&f, Tok::None, &["list"]).await;
    assert_eq!(o.status.code(), Some(1));
    for hint in ["--token", "MAYU_TOKEN", "--token-file"] {
        assert!(err(&o).contains(hint), "{}", err(&o));
    }
    // Too weak a token.
    let o = ctl(&f, Tok::Flag(&f.reader), &["retire", "sn-a1"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("admin"), "{}", err(&o));
    assert!(f.engine.find("sn-a1").is_some());

    // Unknown machine: suggest close ids.
    let o = ctl(&f, Tok::Flag(&f.reader), &["show", "sn-a9"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("unknown machine"), "{}", err(&o));
    assert!(
        err(&o).contains("sn-a1") && err(&o).contains("did you mean"),
        "{}",
        err(&o)
    );
    let o = ctl(
        &f,
        Tok::Flag(&f.reader),
        &["history", "zzzzzzzzzzzzzzzzzzzz"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("mayuctl list"), "{}", err(&o));

    // Usage mistakes exit 2.
    for args in [&[][..], &["assign", "sn-a1"][..], &["frobnicate"][..]] {
        let o = ctl(&f, Tok::Flag(&f.admin), args).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
    }
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
        .args(["--server", "localhost:4080", "list"])
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("not a server URL"), "{}", err(&o));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_file_and_environment() {
    let f = start(false).await;
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
        .env_remove("MAYU_TOKEN")
        .env_remove("MAYU_SERVER")
        .args(["--server", &f.url(""), "--token-file"])
        .arg(&f.admin_file)
        .args(["assign", "sn-a1", "discovery"])
        .output()
        .await
        .unwrap();
    ok(&o);
    assert_eq!(
        f.engine.history("sn-a1").unwrap()[0].author,
        "admin",
        "the token's name is the author"
    );
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
        .env_remove("MAYU_TOKEN_FILE")
        .env("MAYU_SERVER", f.url(""))
        .env("MAYU_TOKEN", &f.reader)
        .args(["list", "--no-legend", "--fields", "id"])
        .output()
        .await
        .unwrap();
    assert_eq!(ok(&o).lines().count(), 3);
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
        .env_remove("MAYU_TOKEN")
        .args([
            "--server",
            &f.url(""),
            "--token-file",
            "/nonexistent/token",
            "list",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("/nonexistent/token"), "{}", err(&o));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_the_servers_certificate() {
    let f = api_fixture::start_tls().await;
    let ca = f.ca_file.clone().unwrap();
    let o = ctl(
        &f,
        Tok::Flag(&f.reader),
        &["list", "--no-legend", "--fields", "id"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("--ca-cert"), "{}", err(&o));
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
        .env_remove("MAYU_TOKEN")
        .env_remove("MAYU_TOKEN_FILE")
        .env("MAYU_CA_CERT", &ca)
        .args(["--server", &f.url(""), "--token", &f.admin])
        .args(["list", "--no-legend", "--fields", "id"])
        .output()
        .await
        .unwrap();
    assert_eq!(ok(&o).lines().count(), 3);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_managed_over_the_api() {
    let f = start(false).await;
    let o = ctl(&f, Tok::Flag(&f.admin), &["token", "add", "ops"]).await;
    let secret = ok(&o).trim().to_string();
    assert!(secret.starts_with("mayu_"), "{secret}");
    assert!(err(&o).contains("not shown again"), "{}", err(&o));
    ok(&ctl(&f, Tok::Flag(&secret), &["list"]).await);
    let o = ctl(&f, Tok::Flag(&secret), &["retire", "sn-a1"]).await;
    assert_eq!(o.status.code(), Some(1), "a read token cannot retire");

    let text = ok(&ctl(&f, Tok::Flag(&f.admin), &["token", "list"]).await);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["admin", "admin"],
            vec!["viewer", "read"],
            vec!["ops", "read"]
        ]
    );
    let o = ctl(&f, Tok::Flag(&f.admin), &["token", "add", "ops"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("taken"), "{}", err(&o));
    let o = ctl(&f, Tok::Flag(&f.reader), &["token", "add", "sneaky"]).await;
    assert_eq!(o.status.code(), Some(1));
    let o = ctl(
        &f,
        Tok::Flag(&f.admin),
        &["token", "add", "x", "--scope", "root"],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));

    ok(&ctl(&f, Tok::Flag(&f.admin), &["token", "revoke", "ops"]).await);
    let o = ctl(&f, Tok::Flag(&secret), &["list"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("not known"), "{}", err(&o));
    let o = ctl(&f, Tok::Flag(&f.admin), &["token", "revoke", "admin"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("last admin token"), "{}", err(&o));
    assert_eq!(f.tokens.names().len(), 2);
    f.stop().await;
}
