//! The boot port over a real loopback listener: assets with Range/ETag, every traversal form
//! refused, asset fetch events, and hot reload of a broken then fixed template.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;

use mayu::events::EventKind;
use mayu::machine::Phase;
use support::{wait_for, Lab, Running};

/// The test kernel from the boot port, with one request header.
async fn kernel_with(
    client: &reqwest::Client,
    r: &Running,
    header: &str,
    value: &str,
) -> reqwest::Response {
    client
        .get(r.url("/assets/flatcar/flatcar_production_pxe.vmlinuz"))
        .header(header, value)
        .send()
        .await
        .unwrap()
}

/// A raw request line, so no client normalises `..` away before it reaches the server.
fn raw_get(addr: SocketAddr, path: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_stream_with_range_and_refuse_traversal() {
    let lab = Lab::new(&[]);
    let kernel: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(
        lab.path()
            .join("images/flatcar/flatcar_production_pxe.vmlinuz"),
        &kernel,
    )
    .unwrap();
    lab.write("secret.txt", "top secret");
    std::os::unix::fs::symlink(
        lab.path().join("secret.txt"),
        lab.path().join("images/flatcar/escape"),
    )
    .unwrap();
    let r = Running::start(&lab).await;
    let client = reqwest::Client::new();
    let mut rx = r.engine.bus().subscribe();

    // Whole file.
    let resp = client
        .get(r.url("/assets/flatcar/flatcar_production_pxe.vmlinuz?id=nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "100000");
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert!(resp.headers().contains_key("last-modified"));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &kernel[..]);
    let ev = wait_for(&mut rx, 5, |e| {
        matches!(
            &e.kind,
            EventKind::BootStep {
                phase: Phase::Kernel,
                bytes: Some(_),
                ..
            }
        )
    })
    .await;
    match &ev.kind {
        EventKind::BootStep { bytes, detail, .. } => {
            assert_eq!(*bytes, Some(100_000));
            assert!(detail.contains("finished"), "{detail}");
        }
        _ => unreachable!(),
    }

    // A range.
    let resp = kernel_with(&client, &r, "range", "bytes=1000-1999").await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 1000-1999/100000");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &kernel[1000..2000]);
    // Suffix range, unsatisfiable range, conditional GET, HEAD.
    let resp = kernel_with(&client, &r, "range", "bytes=-10").await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &kernel[99_990..]);
    let resp = kernel_with(&client, &r, "range", "bytes=200000-").await;
    assert_eq!(resp.status(), 416);
    assert_eq!(resp.headers()["content-range"], "bytes */100000");
    let resp = kernel_with(&client, &r, "if-none-match", &etag).await;
    assert_eq!(resp.status(), 304);
    let resp = client
        .head(r.url("/assets/flatcar/flatcar_production_pxe.vmlinuz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "100000");

    // Every traversal form is a 4xx, and none leaks the file.
    let addr = r.boot;
    let statuses = tokio::task::spawn_blocking(move || {
        [
            "/assets/../config.yaml",
            "/assets/flatcar/../../config.yaml",
            "/assets/flatcar/..%2F..%2Fconfig.yaml",
            "/assets/%2e%2e/config.yaml",
            "/assets/flatcar/%2Fetc%2Fpasswd",
            "/assets/flatcar/.hidden",
            "/assets/flatcar/%00",
            "/assets/flatcar/escape",
            "/assets/flatcar/missing",
        ]
        .map(|p| (p, raw_get(addr, p)))
    })
    .await
    .unwrap();
    for (path, status) in statuses {
        assert!((400..500).contains(&status), "{path} gave {status}");
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_keeps_the_last_good_set_until_fixed() {
    let lab = Lab::new(&[]);
    let r = Running::start(&lab).await;
    let client = reqwest::Client::new();
    let mut rx = r.engine.bus().subscribe();
    let script = |client: reqwest::Client, url: String| async move {
        client.get(url).send().await.unwrap().text().await.unwrap()
    };
    let url = r.url("/ipxe?mac=52:54:00:00:00:80&serial=HOT1");
    let before = script(client.clone(), url.clone()).await;
    assert!(
        before.contains("flatcar_production_pxe.vmlinuz"),
        "{before}"
    );

    // Broken: an unclosed tag on line 3, saved the way editors do (write temp, rename over).
    let good = std::fs::read_to_string(lab.path().join("templates/flatcar.ipxe")).unwrap();
    let broken = "#!ipxe\n# fine\necho {{ machine.id + }}\nboot\n";
    lab.write("templates/.flatcar.ipxe.swp", broken);
    std::fs::rename(
        lab.path().join("templates/.flatcar.ipxe.swp"),
        lab.path().join("templates/flatcar.ipxe"),
    )
    .unwrap();
    let ev = wait_for(&mut rx, 20, |e| {
        matches!(&e.kind, EventKind::TemplatesReloaded { ok: false, .. })
    })
    .await;
    let EventKind::TemplatesReloaded { errors, .. } = &ev.kind else {
        unreachable!()
    };
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("flatcar.ipxe:3:") && e.contains("expected")),
        "{errors:?}"
    );
    assert_eq!(
        script(client.clone(), url.clone()).await,
        before,
        "the old set keeps serving"
    );

    // Fixed: the new template is served.
    let fixed = good.replace("echo mayu: booting", "echo mayu (edited): booting");
    std::fs::write(lab.path().join("templates/flatcar.ipxe"), fixed).unwrap();
    wait_for(&mut rx, 20, |e| {
        matches!(&e.kind, EventKind::TemplatesReloaded { ok: true, .. })
    })
    .await;
    let after = script(client.clone(), url.clone()).await;
    assert!(after.contains("mayu (edited): booting"), "{after}");
    r.stop().await;
}
