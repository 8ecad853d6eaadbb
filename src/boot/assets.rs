//! Kernel and initrd assets from `images/`, streamed with Range, ETag and Last-Modified. Nothing
//! outside `images/` can be reached: no `..`, no hidden names, no symlinks leading out.

use std::io::SeekFrom;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{BootError, BootState, ClientIp};
use crate::machine::{MachineId, Phase};
use crate::Engine;

#[derive(Debug, Deserialize)]
pub struct AssetQuery {
    id: Option<String>,
}

/// One path segment that names a file directly inside its folder.
fn plain_segment(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.contains(['/', '\\', '\0'])
        && s.chars().all(|c| !c.is_control())
}

/// Which boot phase fetching this file is.
fn phase_of(file: &str) -> Phase {
    let f = file.to_lowercase();
    if f.contains("initrd") || f.contains("cpio") || f.contains("initramfs") || f.ends_with(".img")
    {
        Phase::Initrd
    } else {
        Phase::Kernel
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes. `Err` when
/// unsatisfiable; `Ok(None)` when absent or not a single byte range (served whole).
fn parse_range(h: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = h.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        (start, end)
    };
    if range.0 >= len || range.0 > range.1 {
        return Err(());
    }
    Ok(Some(range))
}

/// Which machine is fetching: the id the iPXE template adds, else the client's lease.
fn who(engine: &Engine, id: Option<String>, ip: Option<IpAddr>) -> Option<MachineId> {
    if let Some(m) = id.and_then(|i| engine.find(&i)) {
        return Some(m.id);
    }
    let IpAddr::V4(v4) = ip? else {
        return None;
    };
    engine.machine_at(v4)
}

/// `GET /assets/{image}/{file}`: a local image (files directly in its folder).
pub async fn asset(
    State(s): State<BootState>,
    ClientIp(ip): ClientIp,
    method: Method,
    Path((image, file)): Path<(String, String)>,
    Query(q): Query<AssetQuery>,
    headers: HeaderMap,
) -> Result<Response, BootError> {
    if !plain_segment(&image) || !plain_segment(&file) {
        return Err(BootError::bad_request(
            "asset paths are /assets/<image>/<file>; `..`, hidden names and separators are refused",
        ));
    }
    serve(s, ip, method, image, file, q, headers).await
}

/// `GET /assets/{image}/{version}/{file}`: a fetched image; only a verified version is served.
pub async fn versioned_asset(
    State(s): State<BootState>,
    ClientIp(ip): ClientIp,
    method: Method,
    Path((image, version, file)): Path<(String, String, String)>,
    Query(q): Query<AssetQuery>,
    headers: HeaderMap,
) -> Result<Response, BootError> {
    if !plain_segment(&image) || !plain_segment(&version) || !plain_segment(&file) {
        return Err(BootError::bad_request(
            "asset paths are /assets/<image>/<version>/<file>; `..`, hidden names and separators are refused",
        ));
    }
    let dir = s.engine.config().images.join(&image).join(&version);
    let state = tokio::task::spawn_blocking(move || {
        dir.is_dir().then(|| crate::images::version_state(&dir))
    })
    .await
    .map_err(|e| BootError::internal(e.to_string()))?;
    match state {
        None => Err(BootError::not_found(format!(
            "no image version {image}/{version}"
        ))),
        Some(crate::images::VersionState::Unverified(why)) => Err(BootError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{image}/{version} is not verified: {why}"),
        )),
        Some(crate::images::VersionState::Verified { .. }) => {
            let dir = format!("{image}/{version}");
            serve(s, ip, method, dir, file, q, headers).await
        }
    }
}

/// Streams `images/<image>/<file>` (`image` may be `name/version`), already checked to be
/// plain segments.
async fn serve(
    s: BootState,
    ip: Option<IpAddr>,
    method: Method,
    image: String,
    file: String,
    q: AssetQuery,
    headers: HeaderMap,
) -> Result<Response, BootError> {
    let root = &s.engine.config().images;
    let root = tokio::fs::canonicalize(root)
        .await
        .map_err(|e| BootError::internal(format!("images folder: {e}")))?;
    let path: PathBuf = match tokio::fs::canonicalize(root.join(&image).join(&file)).await {
        Ok(p) => p,
        Err(_) => return Err(BootError::not_found(format!("no asset {image}/{file}"))),
    };
    // A symlink may point anywhere; only what resolves inside images/ is served.
    if !path.starts_with(&root) {
        return Err(BootError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{image}/{file} leads outside the images folder"),
        ));
    }
    let mut f = tokio::fs::File::open(&path)
        .await
        .map_err(|_| BootError::not_found(format!("no asset {image}/{file}")))?;
    let meta = f
        .metadata()
        .await
        .map_err(|e| BootError::internal(e.to_string()))?;
    if !meta.is_file() {
        return Err(BootError::not_found(format!("no asset {image}/{file}")));
    }
    let len = meta.len();
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let secs = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let etag = format!("\"{secs:x}-{len:x}\"");
    let last_modified = httpdate::fmt_http_date(modified);

    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::LAST_MODIFIED, last_modified)],
        )
            .into_response());
    }

    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // A Range for an older version of the file must not be stitched onto a newer one.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag || v.trim() == last_modified);
    let range = if if_range_ok {
        match parse_range(range_header, len) {
            Ok(r) => r,
            Err(()) => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                )
                    .into_response())
            }
        }
    } else {
        None
    };
    let (status, start, count) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, len),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, count)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified);
    if let Some((a, b)) = range {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"));
    }
    if method == Method::HEAD {
        return builder
            .body(Body::empty())
            .map_err(|e| BootError::internal(e.to_string()));
    }
    if start > 0 {
        f.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| BootError::internal(e.to_string()))?;
    }
    let machine = who(&s.engine, q.id, ip);
    let phase = phase_of(&file);
    s.engine.boot_step(
        machine.as_ref(),
        phase,
        format!("{image}/{file} started"),
        None,
        None,
    );
    let stream = Counted {
        inner: ReaderStream::new(f.take(count)),
        sent: 0,
        expected: count,
        started: Instant::now(),
        report: Some(Report {
            engine: s.engine.clone(),
            machine,
            phase,
            what: format!("{image}/{file}"),
        }),
    };
    builder
        .body(Body::from_stream(stream))
        .map_err(|e| BootError::internal(e.to_string()))
}

struct Report {
    engine: Engine,
    machine: Option<MachineId>,
    phase: Phase,
    what: String,
}

/// Counts bytes as they go out; when the body ends (or the client goes away) the boot step is
/// announced with bytes sent and duration.
struct Counted<S> {
    inner: S,
    sent: u64,
    expected: u64,
    started: Instant,
    report: Option<Report>,
}

impl<S> Stream for Counted<S>
where
    S: Stream<Item = std::io::Result<bytes::Bytes>> + Unpin,
{
    type Item = std::io::Result<bytes::Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let p = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &p {
            self.sent += chunk.len() as u64;
        }
        p
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        if let Some(r) = self.report.take() {
            let done = if self.sent == self.expected {
                "finished"
            } else {
                "aborted"
            };
            r.engine.boot_step(
                r.machine.as_ref(),
                r.phase,
                format!("{} {done}", r.what),
                Some(self.sent),
                Some(self.started.elapsed().as_millis() as u64),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=95-200"), 100), Ok(Some((95, 99))));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(None, 100), Ok(None));
    }

    #[test]
    fn segments() {
        assert!(plain_segment("vmlinuz"));
        for bad in ["..", ".", "", "a/b", "..\\x", ".hidden", "a\0b"] {
            assert!(!plain_segment(bad), "{bad:?}");
        }
    }
}
