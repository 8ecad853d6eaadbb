//! `mayu images fetch`: download a vendor's PXE kernel and initrd with their signatures into a
//! temp folder beside the final one, verify, record, fsync, rename. Whatever fails leaves
//! nothing under the final name; a crashed run's temp folder is removed by the next run.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::verify::{self, Keyring, VerifyError};
use super::{plain_segment, FileRecord, Record, VersionState, RECORD, TEMP_PREFIX};

const FCOS_BASE: &str = "https://builds.coreos.fedoraproject.org";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("unknown image `{0}`; mayu fetches `flatcar` and `fedora-coreos`")]
    UnknownVendor(String),
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the transfer broke off after {got} of {expected} bytes")]
    Truncated {
        url: String,
        got: u64,
        expected: String,
    },
    #[error("{url}: {reason}")]
    Metadata { url: String, reason: String },
    #[error("{file}: sha256 is {got}, but the vendor published {want}")]
    Checksum {
        file: String,
        got: String,
        want: String,
    },
    #[error("{file}: {source}")]
    Signature { file: String, source: VerifyError },
    #[error(transparent)]
    Key(VerifyError),
    #[error("version `{0}` is not a plain folder name (letters, digits, `.`, `-`, `_`, `+`)")]
    BadVersion(String),
    #[error("{path}: cannot read: {source}")]
    ConfigUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    ConfigSyntax {
        path: PathBuf,
        source: Box<serde_saphyr::Error>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Flatcar,
    FedoraCoreos,
}

impl Vendor {
    pub fn parse(name: &str) -> Result<Vendor, FetchError> {
        match name {
            "flatcar" => Ok(Vendor::Flatcar),
            "fedora-coreos" | "fcos" => Ok(Vendor::FedoraCoreos),
            other => Err(FetchError::UnknownVendor(other.to_string())),
        }
    }

    /// The image folder's name.
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Flatcar => "flatcar",
            Vendor::FedoraCoreos => "fedora-coreos",
        }
    }
}

/// What to fetch and from where.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub vendor: Vendor,
    /// Flatcar: `stable`, `beta`, `alpha`, `lts`; FCOS: `stable`, `testing`, `next`.
    pub channel: String,
    /// a release; none means the channel's current one.
    pub version: Option<String>,
    /// replaces the vendor's base URL (`https://<channel>.release.flatcar-linux.net`, or
    /// `https://builds.coreos.fedoraproject.org` for the stream and the artifacts).
    pub mirror: Option<String>,
    /// trust this key file instead of the vendor key shipped in `keys/`.
    pub key: Option<PathBuf>,
    /// Flatcar: also the disk image `flatcar-install` writes (`flatcar_production_image.bin.bz2`,
    /// about 450 MB), for profiles that install to disk from mayu (`flatcar-install -b`).
    pub disk_image: bool,
}

/// The Flatcar disk image `flatcar-install -b <base>` downloads from `<base>/<version>/`.
pub const FLATCAR_DISK_IMAGE: &str = "flatcar_production_image.bin.bz2";

/// What a fetch reports while it runs, for whoever shows it (the console draws it on stderr).
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// a temp folder left by an earlier fetch that did not finish was removed.
    RemovedLeftover(&'a Path),
    /// one of the release's files starts to download (its signature is not reported).
    Started { role: &'a str, url: &'a str },
    /// bytes of that file received so far: at most every 200 ms, and once when it is complete.
    Received {
        file: &'a str,
        got: u64,
        expected: Option<u64>,
    },
    /// that file is complete.
    Finished { file: &'a str },
}

/// Where [`fetch`] sends its [`Progress`]; `&mut |_| {}` ignores it.
pub type OnProgress<'a> = &'a mut (dyn FnMut(Progress<'_>) + Send);

/// Only the `images:` key: fetching must work while the config still names an image folder that
/// does not exist yet (that is a config error until the fetch creates it).
#[derive(serde::Deserialize)]
struct ImagesOnly {
    #[serde(default)]
    images: Option<PathBuf>,
}

/// The folder fetched images go into, as the config at `config_path` names it (default
/// `images/` beside it); the rest of the config is not checked.
pub fn images_root(config_path: &Path) -> Result<PathBuf, FetchError> {
    let text =
        std::fs::read_to_string(config_path).map_err(|source| FetchError::ConfigUnreadable {
            path: config_path.to_path_buf(),
            source,
        })?;
    let raw: ImagesOnly =
        serde_saphyr::from_str(&text).map_err(|source| FetchError::ConfigSyntax {
            path: config_path.to_path_buf(),
            source: Box::new(source),
        })?;
    let images = raw.images.unwrap_or_else(|| "images".into());
    Ok(crate::config::resolve_for(config_path, &images))
}

#[derive(Debug)]
pub enum Outcome {
    Fetched { record: Record, dir: PathBuf },
    AlreadyThere { version: String, dir: PathBuf },
}

/// One file to download, with its signature.
#[derive(Debug, Clone)]
struct Artifact {
    name: String,
    role: &'static str,
    url: String,
    signature_url: String,
    sha256: Option<String>,
}

struct Plan {
    version: String,
    artifacts: Vec<Artifact>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes temp folders under `image_dir` left by runs that are no longer alive (their pid is
/// in the name); a fetch running at the same moment keeps its own. Returns what was removed.
pub fn sweep_leftovers(image_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(image_dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(alive) {
            continue;
        }
        if std::fs::remove_dir_all(e.path()).is_ok() || std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// Whether `path` is the temp folder of a fetch that is still running.
pub fn leftover_in_use(path: &Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .and_then(|n| {
            n.strip_prefix(TEMP_PREFIX)
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
        })
        .is_some_and(alive)
}

/// Removes a folder so that its name disappears in one step: renamed to a temp name first
/// (which a later run sweeps if this one dies half-way), then deleted.
pub fn remove_atomically(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let is_temp = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX));
    let target = if is_temp {
        path.to_path_buf()
    } else {
        let t = temp_name(parent, "gc");
        std::fs::rename(path, &t)?;
        std::fs::File::open(parent)?.sync_all()?;
        super::forget_newest(parent);
        t
    };
    std::fs::remove_dir_all(&target)
}

fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    if pid == i32::try_from(std::process::id()).unwrap_or(-1) {
        return true;
    }
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    // Signal 0 checks existence only. EPERM means it exists but is someone else's.
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// A temp folder that is removed unless it was renamed into place.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn temp_name(image_dir: &Path, what: &str) -> PathBuf {
    image_dir.join(format!(
        "{TEMP_PREFIX}{}-{}-{what}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

fn client() -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .user_agent(concat!("mayu/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Http {
            url: String::new(),
            reason: e.to_string(),
        })
}

fn http_reason(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

async fn get_text(client: &reqwest::Client, url: &str) -> Result<String, FetchError> {
    let resp = client.get(url).send().await.map_err(|e| FetchError::Http {
        url: url.into(),
        reason: http_reason(&e),
    })?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url: url.into(),
            status: resp.status().as_u16(),
        });
    }
    resp.text().await.map_err(|e| FetchError::Http {
        url: url.into(),
        reason: http_reason(&e),
    })
}

/// Streams `url` into `dest`, hashing as it goes; fails on any status but 2xx and on a body
/// shorter than its Content-Length. Reports its bytes to `progress`, if given.
async fn download(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    mut progress: Option<OnProgress<'_>>,
) -> Result<(u64, String), FetchError> {
    let http = |e: reqwest::Error| FetchError::Http {
        url: url.into(),
        reason: http_reason(&e),
    };
    let resp = client.get(url).send().await.map_err(http)?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url: url.into(),
            status: resp.status().as_u16(),
        });
    }
    let expected = resp.content_length();
    let mut file = tokio::fs::File::create(dest).await.map_err(io_err(dest))?;
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    let mut stream = resp.bytes_stream();
    let label = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut shown = Instant::now();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| FetchError::Truncated {
            url: url.into(),
            got,
            expected: expected
                .map(|n| n.to_string())
                .unwrap_or_else(|| format!("? ({})", http_reason(&e))),
        })?;
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io_err(dest))?;
        got += chunk.len() as u64;
        if let Some(report) = progress.as_mut() {
            if shown.elapsed() >= Duration::from_millis(200) {
                shown = Instant::now();
                report(Progress::Received {
                    file: &label,
                    got,
                    expected,
                });
            }
        }
    }
    if let Some(report) = progress {
        report(Progress::Received {
            file: &label,
            got,
            expected,
        });
        report(Progress::Finished { file: &label });
    }
    if let Some(n) = expected {
        if got != n {
            return Err(FetchError::Truncated {
                url: url.into(),
                got,
                expected: n.to_string(),
            });
        }
    }
    file.flush().await.map_err(io_err(dest))?;
    file.sync_all().await.map_err(io_err(dest))?;
    Ok((got, hex::encode(hasher.finalize())))
}

async fn plan_flatcar(client: &reqwest::Client, req: &FetchRequest) -> Result<Plan, FetchError> {
    let base = req
        .mirror
        .clone()
        .unwrap_or_else(|| format!("https://{}.release.flatcar-linux.net", req.channel));
    let base = base.trim_end_matches('/');
    let wanted = req.version.as_deref().unwrap_or("current");
    if !plain_segment(wanted) {
        return Err(FetchError::BadVersion(wanted.into()));
    }
    let folder = format!("{base}/amd64-usr/{wanted}");
    let url = format!("{folder}/version.txt");
    let text = get_text(client, &url).await?;
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("FLATCAR_VERSION="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .ok_or_else(|| FetchError::Metadata {
            url: url.clone(),
            reason: "no FLATCAR_VERSION= line".into(),
        })?;
    if !plain_segment(&version) {
        return Err(FetchError::BadVersion(version));
    }
    if let Some(v) = &req.version {
        if v != "current" && *v != version {
            return Err(FetchError::Metadata {
                url,
                reason: format!("says FLATCAR_VERSION={version}, not the {v} asked for"),
            });
        }
    }
    // The version's own folder, so a `current` that moves mid-download cannot mix releases.
    let folder = format!("{base}/amd64-usr/{version}");
    let disk = req.disk_image.then_some((FLATCAR_DISK_IMAGE, "disk image"));
    let artifacts = [
        ("flatcar_production_pxe.vmlinuz", "kernel"),
        ("flatcar_production_pxe_image.cpio.gz", "initrd"),
    ]
    .into_iter()
    .chain(disk)
    .map(|(name, role)| Artifact {
        name: name.into(),
        role,
        url: format!("{folder}/{name}"),
        signature_url: format!("{folder}/{name}.sig"),
        sha256: None,
    })
    .collect();
    Ok(Plan { version, artifacts })
}

async fn plan_fcos(client: &reqwest::Client, req: &FetchRequest) -> Result<Plan, FetchError> {
    let base = req
        .mirror
        .as_deref()
        .unwrap_or(FCOS_BASE)
        .trim_end_matches('/')
        .to_string();
    let url = format!("{base}/streams/{}.json", req.channel);
    let text = get_text(client, &url).await?;
    let meta = |reason: String| FetchError::Metadata {
        url: url.clone(),
        reason,
    };
    let stream: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| meta(format!("not JSON: {e}")))?;
    let metal = &stream["architectures"]["x86_64"]["artifacts"]["metal"];
    let release = metal["release"]
        .as_str()
        .ok_or_else(|| meta("no architectures.x86_64.artifacts.metal.release".into()))?
        .to_string();
    let version = req.version.clone().unwrap_or_else(|| release.clone());
    if !plain_segment(&version) {
        return Err(FetchError::BadVersion(version));
    }
    let pxe = &metal["formats"]["pxe"];
    let mut artifacts = Vec::new();
    // Saved under version-free names so templates need not know the release.
    for (key, role, name) in [
        ("kernel", "kernel", "fedora-coreos-live-kernel-x86_64"),
        (
            "initramfs",
            "initrd",
            "fedora-coreos-live-initramfs.x86_64.img",
        ),
        ("rootfs", "rootfs", "fedora-coreos-live-rootfs.x86_64.img"),
    ] {
        let a = &pxe[key];
        let field = |f: &str| {
            a[f].as_str().map(str::to_string).ok_or_else(|| {
                meta(format!(
                    "no architectures.x86_64.artifacts.metal.formats.pxe.{key}.{f}"
                ))
            })
        };
        let mut location = field("location")?;
        let mut signature = field("signature")?;
        let mut sha256 = Some(field("sha256")?);
        if req.mirror.is_some() {
            for u in [&mut location, &mut signature] {
                if let Some(rest) = u.strip_prefix(FCOS_BASE) {
                    *u = format!("{base}{rest}");
                }
            }
        }
        if version != release {
            // Older builds keep the same layout; the stream publishes only the current
            // sha256, so for them the signature alone vouches for the file.
            location = location.replace(&release, &version);
            signature = signature.replace(&release, &version);
            sha256 = None;
        }
        artifacts.push(Artifact {
            name: name.into(),
            role,
            url: location,
            signature_url: signature,
            sha256,
        });
    }
    Ok(Plan { version, artifacts })
}

fn sync_dir(dir: &Path) -> Result<(), FetchError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

/// Downloads, verifies and records one release into `images_root/<vendor>/<version>/`,
/// reporting what it does to `progress`.
pub async fn fetch(
    images_root: &Path,
    req: &FetchRequest,
    progress: OnProgress<'_>,
) -> Result<Outcome, FetchError> {
    let keyring = match &req.key {
        Some(path) => Keyring::from_file(path),
        None => match req.vendor {
            Vendor::Flatcar => Keyring::flatcar(),
            Vendor::FedoraCoreos => Keyring::fedora(),
        },
    }
    .map_err(FetchError::Key)?;
    verify::gpgv_available().await.map_err(FetchError::Key)?;
    let image_dir = images_root.join(req.vendor.name());
    std::fs::create_dir_all(&image_dir).map_err(io_err(&image_dir))?;
    for gone in sweep_leftovers(&image_dir) {
        progress(Progress::RemovedLeftover(&gone));
    }
    let client = client()?;
    let plan = match req.vendor {
        Vendor::Flatcar => plan_flatcar(&client, req).await?,
        Vendor::FedoraCoreos => plan_fcos(&client, req).await?,
    };
    let dest = image_dir.join(&plan.version);
    let replacing = dest.exists();
    if replacing && super::version_state(&dest).is_verified() {
        return Ok(Outcome::AlreadyThere {
            version: plan.version,
            dir: dest,
        });
    }

    let mut temp = TempDir {
        path: temp_name(&image_dir, &plan.version),
        keep: false,
    };
    std::fs::create_dir(&temp.path).map_err(io_err(&temp.path))?;
    let mut files = Vec::new();
    let mut signer = String::new();
    for a in &plan.artifacts {
        let path = temp.path.join(&a.name);
        let sig_path = temp.path.join(format!("{}.sig", a.name));
        progress(Progress::Started {
            role: a.role,
            url: &a.url,
        });
        let (size, sha256) = download(&client, &a.url, &path, Some(&mut *progress)).await?;
        download(&client, &a.signature_url, &sig_path, None).await?;
        if let Some(want) = &a.sha256 {
            if !want.eq_ignore_ascii_case(&sha256) {
                return Err(FetchError::Checksum {
                    file: a.name.clone(),
                    got: sha256,
                    want: want.clone(),
                });
            }
        }
        let by = verify::verify_detached(&keyring, &sig_path, &path, &temp.path)
            .await
            .map_err(|source| FetchError::Signature {
                file: a.name.clone(),
                source,
            })?;
        signer = by;
        files.push(FileRecord {
            name: a.name.clone(),
            role: a.role.into(),
            url: a.url.clone(),
            signature_url: a.signature_url.clone(),
            size,
            sha256,
            sha256_published: a.sha256.is_some(),
        });
    }
    let record = Record {
        name: req.vendor.name().into(),
        version: plan.version.clone(),
        channel: req.channel.clone(),
        verified: true,
        verified_by: signer,
        fetched_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        files,
    };
    let record_path = temp.path.join(RECORD);
    let mut json = serde_json::to_vec_pretty(&record).unwrap_or_default();
    json.push(b'\n');
    {
        let mut f = std::fs::File::create(&record_path).map_err(io_err(&record_path))?;
        f.write_all(&json).map_err(io_err(&record_path))?;
        f.sync_all().map_err(io_err(&record_path))?;
    }
    sync_dir(&temp.path)?;
    // What lands must read back as verified, with the same check every boot makes.
    if let VersionState::Unverified(why) = super::version_state(&temp.path) {
        return Err(FetchError::Metadata {
            url: temp.path.display().to_string(),
            reason: why,
        });
    }

    // An unverified folder of the same name (copied by hand, or an old layout) is replaced;
    // it is moved aside first so the final name only ever holds a complete folder.
    let aside = TempDir {
        path: temp_name(&image_dir, "replaced"),
        keep: false,
    };
    if replacing {
        std::fs::rename(&dest, &aside.path).map_err(io_err(&dest))?;
    }
    std::fs::rename(&temp.path, &dest).map_err(io_err(&dest))?;
    temp.keep = true;
    sync_dir(&image_dir)?;
    super::forget_newest(&image_dir);
    drop(aside);
    Ok(Outcome::Fetched { record, dir: dest })
}
