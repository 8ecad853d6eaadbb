//! Mayu's mayuctl verbs on the real `mayuctl` binary against a real mayu on loopback:
//! `set ID cabinet|metadata|state|etcdtoken|providerid|ipmiaddr`, values starting with `-`,
//! `status`, `version`, `config get`, and `boot-complete --update-versions` run as Mayu's
//! installed machines run it (`--host --port --no-tls`, no token, SERIAL and versions from the
//! env files).

#![allow(clippy::unwrap_used)] // tests stop at the first surprise

mod support;

use support::{Lab, Running};

/// Runs mayuctl with `args`; (exit code, stdout, stderr).
async fn mayuctl(args: &[&str]) -> (i32, String, String) {
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
        .args(args)
        .env_remove("MAYU_SERVER")
        .env_remove("MAYU_TOKEN")
        .env_remove("MAYU_TOKEN_FILE")
        .output()
        .await
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mayus_verbs_work_on_the_real_binary() {
    let lab = Lab::new(&[(
        "templates_env:",
        "compat:\n  mayu:\n    allow_from: [127.0.0.1/32]\ntemplates_env:",
    )]);
    let r = Running::start(&lab).await;
    let resp = reqwest::get(r.url("/ipxe?mac=52:54:00:bb:00:01&serial=SN-CTL1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = r.engine.find_host("SN-CTL1").unwrap().id.to_string();
    let server = format!("http://{}", r.api);
    let token = r.token();
    let op = |rest: &[&str]| {
        let mut a = vec!["--server", server.as_str(), "--token", token.as_str()];
        a.extend_from_slice(rest);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        mayuctl(&refs).await
    };

    for (field, value) in [
        ("cabinet", "5/12"),
        ("metadata", "role=worker,zone=b"),
        ("etcdtoken", "tok-77"),
        ("providerid", "-dash-first"),
        ("ipmiaddr", "10.1.0.9"),
        ("state", "configured"),
    ] {
        let (code, out, err) = run(op(&["set", &id, field, value])).await;
        assert_eq!(code, 0, "set {field}: {out}{err}");
    }
    // Mayu's own example: an override whose value looks like a flag, with no `--`.
    let (code, out, err) = run(op(&["override", &id, "docker_args", "--log-level=warn"])).await;
    assert_eq!(code, 0, "{out}{err}");

    r.engine.flush().unwrap();
    let m = r.engine.find_host("SN-CTL1").unwrap();
    let rack = m.rack.clone().unwrap();
    assert_eq!((rack.rack.as_str(), rack.unit), ("5", Some(12)));
    assert_eq!(m.metadata, ["role=worker", "zone=b"]);
    assert_eq!(m.etcd_token.as_deref(), Some("tok-77"));
    assert_eq!(m.provider_id.as_deref(), Some("-dash-first"));
    assert_eq!(m.ipmi_addr.as_deref(), Some("10.1.0.9"));
    assert_eq!(m.overrides["docker_args"], "--log-level=warn");

    // An unknown key is a usage error naming what can be set.
    let (code, _, err) = run(op(&["set", &id, "colour", "blue"])).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("etcd-token") && err.contains("cabinet"),
        "{err}"
    );

    // `status`: Mayu's layout.
    let (code, out, err) = run(op(&["status", "SN-CTL1"])).await;
    assert_eq!(code, 0, "{err}");
    for line in [
        "Serial:",
        "SN-CTL1",
        "Cabinet:",
        "Machine on Cabinet:",
        "| 12",
        "EtcdToken:",
        "tok-77",
        "Metadata:",
        "role=worker, zone=b",
        "Provider ID:",
        "-dash-first",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }
    assert!(out.lines().all(|l| l.contains(" | ")), "{out}");

    // `version`: this mayuctl's and the server's.
    let (code, out, _) = run(op(&["version"])).await;
    assert_eq!(code, 0);
    let v = env!("CARGO_PKG_VERSION");
    assert!(out.contains(&format!("mayuctl version {v}")), "{out}");
    assert!(
        out.contains(&format!("version {v}")) && out.contains("server"),
        "{out}"
    );

    // `config get`: to stdout, and into a file.
    let (code, out, _) = run(op(&["config", "get"])).await;
    assert_eq!(code, 0);
    let shipped = std::fs::read_to_string(lab.path().join("config.yaml")).unwrap();
    assert_eq!(out, shipped);
    let file = lab.path().join("fetched.yaml");
    let (code, _, _) = run(op(&[
        "config",
        "get",
        "--config-file",
        file.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(code, 0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), shipped);

    // The installed machine's unit: Mayu's flags, no token, versions from its files.
    lab.write(
        "machine/etc/mayu-env",
        "SERIAL=SN-CTL1\nDOCKER_VERSION=24.0.9\nETCD_VERSION=3.5.12\n",
    );
    lab.write(
        "machine/etc/os-release",
        "NAME=\"Flatcar Container Linux by Kinvolk\"\nID=flatcar\nVERSION=3815.2.5\n",
    );
    let env_file = lab.path().join("machine/etc/mayu-env");
    let os_release = lab.path().join("machine/etc/os-release");
    let port = r.api.port().to_string();
    let (code, out, err) = mayuctl(&[
        "boot-complete",
        "--host=127.0.0.1",
        &format!("--port={port}"),
        "--no-tls",
        "--update-versions",
        "--env-file",
        env_file.to_str().unwrap(),
        "--os-release",
        os_release.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    r.engine.flush().unwrap();
    let m = r.engine.find_host("SN-CTL1").unwrap();
    assert_eq!(m.state, mayu::machine::State::Running);
    assert_eq!(m.versions["os"], "3815.2.5");
    assert_eq!(m.versions["docker"], "24.0.9");
    assert_eq!(m.versions["etcd"], "3.5.12");

    // Without SERIAL the machine is not guessed.
    lab.write("machine/etc/mayu-env", "DOCKER_VERSION=1\n");
    let (code, _, err) = mayuctl(&[
        "boot-complete",
        "--host=127.0.0.1",
        &format!("--port={port}"),
        "--no-tls",
        "--env-file",
        env_file.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("no SERIAL"), "{err}");
    r.stop().await;
}
