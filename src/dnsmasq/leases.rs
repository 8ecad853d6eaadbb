//! dnsmasq's lease file: a parser into [`Lease`]s and a watcher that keeps the engine's lease
//! table in step with the file.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::lease::Lease;
use crate::machine::Mac;

/// Parses the lease file's text. Each IPv4 line is
/// `<expiry epoch|0> <mac> <ip> <hostname|*> <client-id|*>`; IPv6 lines (after `duid`) and
/// lines that do not parse are skipped, and leases that expired before `now` are left out
/// (dnsmasq prunes them only at its next write).
pub fn parse_leases(text: &str, now: OffsetDateTime) -> Vec<Lease> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [expiry, mac, ip, host, rest @ ..] = f.as_slice() else {
            continue;
        };
        let (Ok(expiry), Ok(mac), Ok(ip)) = (
            expiry.parse::<i64>(),
            mac.parse::<Mac>(),
            ip.parse::<Ipv4Addr>(),
        ) else {
            continue;
        };
        let expires = if expiry == 0 {
            None
        } else {
            match OffsetDateTime::from_unix_timestamp(expiry) {
                Ok(t) if t >= now => Some(t),
                _ => continue,
            }
        };
        let star = |s: &str| (s != "*").then(|| s.to_string());
        out.push(Lease {
            mac,
            ip,
            hostname: star(host),
            expires,
            client_id: rest.first().and_then(|c| star(c)),
            machine: None,
        });
    }
    out.sort_by_key(|l| l.ip);
    out
}

/// Reads the lease file; a missing file is an empty table (dnsmasq creates it on start).
pub fn read_leases(path: &Path) -> std::io::Result<Vec<Lease>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_leases(&text, OffsetDateTime::now_utc())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Keeps `engine`'s lease table equal to the lease file until cancelled. The folder is
/// watched rather than the file, since the file may not exist yet (dnsmasq creates it) and
/// may be replaced.
pub async fn watch(engine: Engine, path: PathBuf, cancel: CancellationToken) {
    let (tx, rx) = mpsc::channel::<()>(16);
    let folder = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = path.file_name().map(|n| n.to_os_string());
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            // Our own reads raise open/close events; reacting to them would re-read forever.
            let writes = !matches!(
                ev.kind,
                notify::EventKind::Access(notify::event::AccessKind::Open(_))
                    | notify::EventKind::Access(notify::event::AccessKind::Close(
                        notify::event::AccessMode::Read
                    ))
                    | notify::EventKind::Access(notify::event::AccessKind::Read)
                    | notify::EventKind::Access(notify::event::AccessKind::Any)
                    | notify::EventKind::Access(notify::event::AccessKind::Other)
            );
            if writes
                && ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            {
                // A full channel already holds a wake-up; one more adds nothing.
                let _ = tx.try_send(());
            }
        }
    });
    let _watcher = match watcher.and_then(|mut w| {
        w.watch(&folder, RecursiveMode::NonRecursive)?;
        Ok(w)
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(folder = %folder.display(), error = %e, "cannot watch the lease file; polling it");
            None
        }
    };
    let polling = _watcher.is_none();
    // Without a watcher its sender is gone and `recv` would return at once, forever.
    let mut rx = (!polling).then_some(rx);
    let mut last: Option<Vec<Lease>> = None;
    loop {
        match read_leases(&path) {
            Ok(leases) => {
                if last.as_ref() != Some(&leases) {
                    engine.set_leases(leases.clone());
                    last = Some(leases);
                }
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the lease file")
            }
        }
        // Expiry changes what the table holds even when the file does not; so does a
        // missing watcher. Both are covered by a slow re-read.
        let idle = if polling {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(30)
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some(()) = async { match rx.as_mut() { Some(r) => r.recv().await, None => None } } => {}
            _ = tokio::time::sleep(idle) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_lines_parse_and_expired_ones_drop() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("test fixture");
        let text = "\
1800003600 0e:3e:7a:6b:fc:11 10.77.0.150 node1 01:0e:3e:7a:6b:fc:11
0 52:54:00:00:00:02 10.77.0.101 * *
1700000000 52:54:00:00:00:03 10.77.0.102 old *
duid 00:01:00:01:2c:aa:bb:cc
1800003600 1234 fd77::5 * 00:01:00:01
garbage
";
        let leases = parse_leases(text, now);
        assert_eq!(leases.len(), 2, "{leases:?}");
        assert_eq!(leases[0].ip, Ipv4Addr::new(10, 77, 0, 101));
        assert_eq!(leases[0].expires, None, "0 is an infinite lease");
        assert_eq!(leases[0].hostname, None);
        assert_eq!(leases[0].client_id, None);
        assert_eq!(leases[1].hostname.as_deref(), Some("node1"));
        assert_eq!(leases[1].client_id.as_deref(), Some("01:0e:3e:7a:6b:fc:11"));
        assert_eq!(
            leases[1].expires,
            Some(OffsetDateTime::from_unix_timestamp(1_800_003_600).expect("test fixture"))
        );
        assert_eq!(
            leases[1].mac,
            "0e:3e:7a:6b:fc:11".parse::<Mac>().expect("test fixture")
        );
    }
}
