//! Kernel and initrd assets from `images/`, streamed with Range, ETag and Last-Modified. Nothing
//! outside `images/` can be reached: no `..`, no hidden names, no symlinks leading out.

use std::future::Future;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use serde::Deserialize;
use tokio::task::JoinHandle;

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
    verified(&s, &image, &version).await?;
    serve(
        s,
        ip,
        method,
        format!("{image}/{version}"),
        file,
        q,
        headers,
    )
    .await
}

/// A fetched image version may be served only once verified.
async fn verified(s: &BootState, image: &str, version: &str) -> Result<(), BootError> {
    let dir = s.engine.config().images.join(image).join(version);
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
        Some(crate::images::VersionState::Verified { .. }) => Ok(()),
    }
}

/// Serves `file` from an asset folder as [`crate::images::asset_dir`] names it (`image` or
/// `image/version`), for `machine`: the legacy `/images/...` routes.
pub(super) async fn serve_for(
    s: BootState,
    ip: Option<IpAddr>,
    method: Method,
    asset_dir: String,
    file: String,
    machine: Option<String>,
    headers: HeaderMap,
) -> Result<Response, BootError> {
    if let Some((image, version)) = asset_dir.split_once('/') {
        verified(&s, image, version).await?;
    }
    serve(
        s,
        ip,
        method,
        asset_dir,
        file,
        AssetQuery { id: machine },
        headers,
    )
    .await
}

/// What [`open_asset`] found: the open file and what the headers are made of.
struct Opened {
    file: std::fs::File,
    len: u64,
    modified: SystemTime,
}

/// Opens `images/<image>/<file>` where it stands: one `openat2` that the kernel refuses to
/// resolve outside the images folder (`RESOLVE_BENEATH`, symlinks included), and one `fstat`.
/// Both are answered from the dentry and inode caches, so no blocking thread is needed.
/// `None` when the kernel has no `openat2` (before 5.6) or will not follow a symlink on the
/// path: then [`open_asset`] does it the long way on a blocking thread (and refuses what
/// resolves outside the folder).
fn open_beneath(
    root: &std::path::Path,
    image: &str,
    file: &str,
) -> Option<Result<Opened, BootError>> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let not_found = || BootError::not_found(format!("no asset {image}/{file}"));
    let dir = match std::fs::File::open(root) {
        Ok(d) => d,
        Err(e) => return Some(Err(BootError::internal(format!("images folder: {e}")))),
    };
    let rel = std::path::Path::new(image).join(file);
    let Ok(rel) = CString::new(rel.as_os_str().as_bytes()) else {
        return Some(Err(not_found()));
    };
    // The kernel's `struct open_how` (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2(2) with a directory descriptor we hold open, a NUL-terminated path and a
    // properly sized `open_how`; the returned descriptor (if any) is owned by the File below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            // No openat2; or a symlink the kernel will not follow beneath the folder (any
            // absolute one, even pointing inside): the long way decides.
            Some(libc::ENOSYS) | Some(libc::EXDEV) | Some(libc::ELOOP) => None,
            _ => Some(Err(not_found())),
        };
    }
    let Ok(fd) = i32::try_from(fd) else {
        return Some(Err(not_found()));
    };
    // SAFETY: `fd` was just returned by openat2 and is owned by nothing else.
    let f = unsafe { std::fs::File::from_raw_fd(fd) };
    Some(opened(f, not_found))
}

fn opened(f: std::fs::File, not_found: impl Fn() -> BootError) -> Result<Opened, BootError> {
    let meta = f
        .metadata()
        .map_err(|e| BootError::internal(e.to_string()))?;
    if !meta.is_file() {
        return Err(not_found());
    }
    Ok(Opened {
        len: meta.len(),
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        file: f,
    })
}

/// Resolves, checks and opens `images/<image>/<file>` in one trip to a blocking thread (four
/// `tokio::fs` calls would be four).
fn open_asset(root: &std::path::Path, image: &str, file: &str) -> Result<Opened, BootError> {
    let root = std::fs::canonicalize(root)
        .map_err(|e| BootError::internal(format!("images folder: {e}")))?;
    let not_found = || BootError::not_found(format!("no asset {image}/{file}"));
    let path: PathBuf =
        std::fs::canonicalize(root.join(image).join(file)).map_err(|_| not_found())?;
    // A symlink may point anywhere; only what resolves inside images/ is served.
    if !path.starts_with(&root) {
        return Err(BootError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{image}/{file} leads outside the images folder"),
        ));
    }
    let f = std::fs::File::open(&path).map_err(|_| not_found())?;
    opened(f, not_found)
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
    let root = s.engine.config().images.clone();
    let (img, name) = (image.clone(), file.clone());
    let Opened {
        file: f,
        len,
        modified,
    } = match open_beneath(&root, &image, &file) {
        Some(opened) => opened?,
        None => tokio::task::spawn_blocking(move || open_asset(&root, &img, &name))
            .await
            .map_err(|e| BootError::internal(e.to_string()))??,
    };
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
        inner: FileChunks::new(f, start, count, CHUNK),
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

/// Bytes read per trip to a blocking thread. Each trip costs two context switches, so small
/// reads spend the CPU on scheduling rather than copying (4 KiB reads held mayu to a quarter of
/// nginx's throughput). Measured on 32 clients: 128 KiB cost 25% more CPU per byte than
/// 256 KiB, while 512 KiB and 1 MiB saved under 5% for 40 and 50 MB more peak memory.
const CHUNK: usize = 256 * 1024;

/// Buffers a response keeps for reuse. At most three are in use at once: the tail of one chunk
/// still draining from hyper's write buffer, the next queued behind it, and one being read
/// ahead. Reusing them saves the allocator's page faults and zeroing on every chunk (a tenth
/// of the CPU per byte), and none outlives the response.
const SPARE_BUFFERS: usize = 3;

/// A connection's spare read buffers, which sent chunks return to.
type Spares = Arc<Mutex<Vec<Vec<u8>>>>;

/// A chunk on its way to the socket; once hyper has written and dropped it, its buffer goes
/// back to the response it came from (if that is still running).
struct Chunk {
    buf: Vec<u8>,
    home: Weak<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let Some(home) = self.home.upgrade() else {
            return;
        };
        let mut spares = home.lock().unwrap_or_else(|p| p.into_inner());
        if spares.len() < SPARE_BUFFERS {
            spares.push(std::mem::take(&mut self.buf));
        }
    }
}

/// `count` bytes of a file from `start`, as chunks read with `pread` on blocking threads, the
/// next chunk read while the previous one is being sent, so a connection holds at most
/// [`SPARE_BUFFERS`] chunks whatever the file size (hyper asks for the next chunk only once
/// its write buffer is nearly drained). Positional reads share no cursor, and a file that shrinks
/// underneath ends the stream with an error (the client sees a short body) rather than the
/// SIGBUS a shrunk memory map would raise.
struct FileChunks {
    file: Arc<std::fs::File>,
    /// Where the next read starts.
    at: u64,
    /// Bytes not yet asked for.
    left: u64,
    chunk: usize,
    spares: Spares,
    next: Option<Next>,
}

/// The chunk after the one being sent: already read (the page cache had it), or being read.
enum Next {
    Ready(std::io::Result<Bytes>),
    Reading(JoinHandle<std::io::Result<Bytes>>),
}

impl FileChunks {
    fn new(file: std::fs::File, start: u64, count: u64, chunk: usize) -> FileChunks {
        FileChunks {
            file: Arc::new(file),
            at: start,
            left: count,
            chunk: chunk.max(1),
            spares: Spares::default(),
            next: None,
        }
    }

    /// Starts reading the next chunk, if any is left.
    fn read_ahead(&mut self) {
        if self.left == 0 {
            return;
        }
        let n = usize::try_from(self.left).map_or(self.chunk, |left| left.min(self.chunk));
        let (file, at) = (self.file.clone(), self.at);
        self.at += n as u64;
        self.left -= n as u64;
        let mut buf = self
            .spares
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default();
        // Only a fresh buffer is zeroed; a reused one is overwritten as it stands.
        buf.resize(n, 0);
        let home = Arc::downgrade(&self.spares);
        // What the page cache holds is copied here, without a trip to a blocking thread (the
        // common case: every machine of a rack fetches the same initrd); the rest is read
        // there.
        let cached = read_cached(&file, at, &mut buf);
        self.next = Some(if cached == n {
            Next::Ready(Ok(Bytes::from_owner(Chunk { buf, home })))
        } else {
            Next::Reading(tokio::task::spawn_blocking(move || {
                read_rest(&file, at, cached, buf, home)
            }))
        });
    }
}

/// Reads what the page cache already holds at `at` into `buf` without ever waiting for the
/// disk (`preadv2` with `RWF_NOWAIT`); 0 when nothing is cached or the kernel cannot say.
fn read_cached(file: &std::fs::File, at: u64, buf: &mut [u8]) -> usize {
    use std::os::fd::AsRawFd;
    let Ok(offset) = libc::off_t::try_from(at) else {
        return 0;
    };
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: one iovec spanning `buf`, which is borrowed mutably for the whole call; the
    // descriptor belongs to `file`, which is open.
    let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
    usize::try_from(read).unwrap_or(0)
}

/// Fills `buf` from byte `filled` on (the first `filled` bytes are already read) with the
/// file's bytes at `at`, or an error if the file ends first.
fn read_rest(
    file: &std::fs::File,
    at: u64,
    filled: usize,
    mut buf: Vec<u8>,
    home: Weak<Mutex<Vec<Vec<u8>>>>,
) -> std::io::Result<Bytes> {
    let rest = buf.get_mut(filled..).unwrap_or_default();
    file.read_exact_at(rest, at + filled as u64).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::new(e.kind(), "the file shrank while it was being served")
        } else {
            e
        }
    })?;
    Ok(Bytes::from_owner(Chunk { buf, home }))
}

impl Stream for FileChunks {
    type Item = std::io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.next.is_none() {
            self.read_ahead();
        }
        let done = match self.next.as_mut() {
            None => return Poll::Ready(None),
            Some(Next::Reading(reading)) => ready!(Pin::new(reading).poll(cx)),
            Some(Next::Ready(_)) => match self.next.take() {
                Some(Next::Ready(r)) => Ok(r),
                _ => return Poll::Ready(None),
            },
        };
        self.next = None;
        match done {
            Ok(Ok(chunk)) => {
                self.read_ahead();
                Poll::Ready(Some(Ok(chunk)))
            }
            Ok(Err(e)) => {
                self.left = 0;
                Poll::Ready(Some(Err(e)))
            }
            Err(e) => {
                self.left = 0;
                Poll::Ready(Some(Err(std::io::Error::other(e))))
            }
        }
    }
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

    /// A file of `len` bytes whose every byte says where it is.
    fn numbered(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        (f, data)
    }

    /// The fast open serves what lies beneath the images folder and hands anything a symlink
    /// leads to (inside or out) to the long way, which refuses what ends up outside.
    #[test]
    fn opening_stays_beneath_the_images_folder() {
        let lab = tempfile::tempdir().unwrap();
        let root = lab.path().join("images");
        std::fs::create_dir_all(root.join("x")).unwrap();
        std::fs::write(root.join("x/kernel"), b"k").unwrap();
        std::fs::write(lab.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(lab.path().join("secret"), root.join("x/out")).unwrap();
        std::os::unix::fs::symlink(root.join("x/kernel"), root.join("x/in")).unwrap();
        let ok = open_beneath(&root, "x", "kernel").unwrap().unwrap();
        assert_eq!(ok.len, 1);
        let missing = open_beneath(&root, "x", "nothing").unwrap();
        assert_eq!(missing.err().map(|e| e.status), Some(StatusCode::NOT_FOUND));
        // Absolute symlinks: the kernel will not say; the long way decides.
        assert!(open_beneath(&root, "x", "out").is_none());
        assert!(open_beneath(&root, "x", "in").is_none());
        let refused = open_asset(&root, "x", "out").err().map(|e| e.status);
        assert_eq!(refused, Some(StatusCode::FORBIDDEN));
        assert_eq!(open_asset(&root, "x", "in").unwrap().len, 1);
    }

    /// The two halves of a chunk read: what the page cache gave without waiting, then the rest
    /// from the disk; together exactly the file's bytes, wherever the cache stopped.
    #[test]
    fn a_read_continues_where_the_cache_stopped() {
        let (f, data) = numbered(10_000);
        let file = std::fs::File::open(f.path()).unwrap();
        let mut buf = vec![0u8; 4_000];
        let cached = read_cached(&file, 3_000, &mut buf);
        assert!(cached <= 4_000);
        assert_eq!(buf[..cached], data[3_000..3_000 + cached]);
        for filled in [0, 1, 2_500, cached] {
            let mut partial = vec![0u8; 4_000];
            partial[..filled].copy_from_slice(&data[3_000..3_000 + filled]);
            let chunk = read_rest(&file, 3_000, filled, partial, Weak::new()).unwrap();
            assert_eq!(&chunk[..], &data[3_000..7_000], "filled {filled}");
        }
        // Past the end: nothing cached, and the rest is an error, not short data.
        let mut tail = vec![0u8; 100];
        assert_eq!(read_cached(&file, 20_000, &mut tail), 0);
        assert!(read_rest(&file, 9_950, 0, tail, Weak::new()).is_err());
    }

    async fn collect(f: &tempfile::NamedTempFile, start: u64, count: u64, chunk: usize) -> Vec<u8> {
        use futures_util::StreamExt;
        let file = std::fs::File::open(f.path()).unwrap();
        let mut chunks = FileChunks::new(file, start, count, chunk);
        let mut out = Vec::new();
        while let Some(c) = chunks.next().await {
            let c = c.unwrap();
            assert!(!c.is_empty() && c.len() <= chunk, "chunk of {}", c.len());
            out.extend_from_slice(&c);
        }
        out
    }

    #[tokio::test]
    async fn chunks_cover_any_range_exactly() {
        let (f, data) = numbered(1000);
        for chunk in [1, 7, 64, 999, 1000, 4096] {
            for (start, count) in [(0, 1000), (0, 1), (999, 1), (6, 8), (63, 130), (500, 500)] {
                let got = collect(&f, start, count, chunk).await;
                let want = &data[start as usize..(start + count) as usize];
                assert_eq!(got, want, "chunk {chunk}, {start}+{count}");
            }
        }
        assert!(collect(&f, 10, 0, 7).await.is_empty());
    }

    #[tokio::test]
    async fn buffers_are_reused_and_bounded() {
        use futures_util::StreamExt;
        let (f, data) = numbered(10_000);
        let file = std::fs::File::open(f.path()).unwrap();
        let mut chunks = FileChunks::new(file, 0, 10_000, 100);
        let (mut out, mut buffers) = (Vec::new(), std::collections::HashSet::new());
        while let Some(c) = chunks.next().await {
            let c = c.unwrap();
            out.extend_from_slice(&c);
            buffers.insert(c.as_ptr() as usize);
        }
        assert_eq!(out, data);
        // A hundred chunks through one buffer being sent and one being read ahead, both back
        // in the spares at the end.
        assert_eq!(buffers.len(), 2);
        assert_eq!(chunks.spares.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_file_that_shrinks_ends_in_an_error() {
        use futures_util::StreamExt;
        let (f, _) = numbered(1000);
        let file = std::fs::File::open(f.path()).unwrap();
        let mut chunks = FileChunks::new(file, 0, 1000, 100);
        assert_eq!(chunks.next().await.unwrap().unwrap().len(), 100);
        // Truncated in place, as an operator might; the read ahead may already hold bytes
        // 100..200, but nothing past the new end is served as if it were the file.
        f.as_file().set_len(150).unwrap();
        let mut sent = 100;
        loop {
            match chunks.next().await {
                Some(Ok(c)) => sent += c.len(),
                Some(Err(e)) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
                    break;
                }
                None => panic!("the stream ended without an error after {sent} bytes"),
            }
        }
        assert!(sent <= 200, "{sent}");
        assert!(chunks.next().await.is_none());
    }

    #[test]
    fn segments() {
        assert!(plain_segment("vmlinuz"));
        for bad in ["..", ".", "", "a/b", "..\\x", ".hidden", "a\0b"] {
            assert!(!plain_segment(bad), "{bad:?}");
        }
    }
}
