//! Assets larger than the server's read chunk, over a real loopback listener: served
//! byte-identical whole and in ranges that straddle chunk boundaries, and a client that goes
//! away mid-file counted as an aborted fetch with the bytes it was sent.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use mayu::events::EventKind;
use mayu::machine::Phase;
use support::{wait_for, Lab};
use tokio_util::sync::CancellationToken;

/// Larger than any read chunk mayu uses, and not a multiple of a power of two.
const LEN: usize = 3 * 1024 * 1024 + 12_345;
/// Mayu's chunk size as of writing; the ranges below straddle its multiples, and a change of
/// chunk size only makes them ordinary ranges.
const CHUNK: u64 = 256 * 1024;

fn data(len: usize) -> Vec<u8> {
    // Not periodic at any power of two, so a chunk served at the wrong offset shows.
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect()
}

async fn start(
    lab: &Lab,
) -> (
    mayu::Engine,
    std::net::SocketAddr,
    CancellationToken,
    mayu::services::Services,
) {
    let engine = lab.engine();
    let cancel = CancellationToken::new();
    let services = mayu::services::start(engine.clone(), cancel.clone())
        .await
        .unwrap();
    (engine, services.boot_addr, cancel, services)
}

async fn stop(cancel: CancellationToken, services: mayu::services::Services) {
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), services.stopped())
        .await
        .expect("services stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_assets_are_served_exactly_whole_and_in_ranges() {
    let lab = Lab::new(&[]);
    let kernel = data(LEN);
    std::fs::write(lab.path().join("images/flatcar/big.initrd"), &kernel).unwrap();
    let (engine, addr, cancel, services) = start(&lab).await;
    let url = format!("http://{addr}/assets/flatcar/big.initrd");
    let client = reqwest::Client::new();
    let mut rx = engine.bus().subscribe();

    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], LEN.to_string().as_str());
    let body = resp.bytes().await.unwrap();
    assert!(body.as_ref() == &kernel[..], "whole file differs");
    let ev = wait_for(&mut rx, 10, |e| {
        matches!(
            &e.kind,
            EventKind::BootStep {
                phase: Phase::Initrd,
                bytes: Some(_),
                ..
            }
        )
    })
    .await;
    match &ev.kind {
        EventKind::BootStep { bytes, detail, .. } => {
            assert_eq!(*bytes, Some(LEN as u64));
            assert!(detail.contains("finished"), "{detail}");
        }
        _ => unreachable!(),
    }

    let len = LEN as u64;
    for (a, b) in [
        (CHUNK - 1, CHUNK),          // two bytes, one each side of a boundary
        (CHUNK - 10, 2 * CHUNK + 9), // a whole chunk and a bit either side
        (12_345, 12_345 + 1024 * 1024 - 1),
        (3 * CHUNK, 5 * CHUNK - 1), // exactly two chunks, aligned
        (len - CHUNK - 3, len - 1), // the tail
        (0, len - 1),
    ] {
        let resp = client
            .get(&url)
            .header("range", format!("bytes={a}-{b}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206, "{a}-{b}");
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes {a}-{b}/{len}").as_str()
        );
        let body = resp.bytes().await.unwrap();
        assert!(
            body.as_ref() == &kernel[a as usize..=b as usize],
            "range {a}-{b} differs"
        );
    }
    stop(cancel, services).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_file_is_counted_as_aborted() {
    let lab = Lab::new(&[]);
    // Far more than loopback socket buffers hold, so the server is still sending when the
    // client leaves.
    let len = 64 * 1024 * 1024;
    std::fs::write(lab.path().join("images/flatcar/huge.initrd"), data(len)).unwrap();
    let (engine, addr, cancel, services) = start(&lab).await;
    let mut rx = engine.bus().subscribe();

    let got = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /assets/flatcar/huge.initrd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = vec![0u8; 1024 * 1024];
        let mut got = 0;
        while got < buf.len() {
            let n = s.read(&mut buf[got..]).unwrap();
            assert!(n > 0, "the server closed early");
            got += n;
        }
        assert!(buf.starts_with(b"HTTP/1.1 200"));
        // Dropped here: the connection closes with most of the file unsent.
        got
    })
    .await
    .unwrap();

    let ev = wait_for(&mut rx, 30, |e| {
        matches!(
            &e.kind,
            EventKind::BootStep {
                phase: Phase::Initrd,
                bytes: Some(_),
                ..
            }
        )
    })
    .await;
    match &ev.kind {
        EventKind::BootStep { bytes, detail, .. } => {
            assert!(detail.contains("huge.initrd aborted"), "{detail}");
            let sent = bytes.unwrap();
            assert!(sent >= (got as u64).saturating_sub(1024), "{sent} < {got}");
            assert!(sent < len as u64, "{sent}");
        }
        _ => unreachable!(),
    }
    stop(cancel, services).await;
}
