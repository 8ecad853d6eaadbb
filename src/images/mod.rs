//! OS images under `images/`: local images (kernel and initrd directly in `images/<name>/`, built
//! by the lab scripts) and fetched ones (`images/<name>/<version>/`, downloaded and verified by
//! `mayu images fetch`, with a `mayu-image.json` record of what was verified and by which key).

pub mod fetch;
pub mod list;
pub mod verify;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError, Env, Profile};
use crate::machine::Machine;

/// The record written into every fetched version folder.
pub const RECORD: &str = "mayu-image.json";
/// The template-env override key that pins a machine to one version of its profile's image.
pub const VERSION_OVERRIDE: &str = "image_version";
/// Temp folders of a fetch (and of a gc removal) start with this; hidden, so never served.
pub(crate) const TEMP_PREFIX: &str = ".fetch-";

/// One downloaded file, as verified.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    /// the file's name in the version folder.
    pub name: String,
    /// `kernel`, `initrd` or `rootfs`.
    pub role: String,
    pub url: String,
    /// the detached signature, saved beside the file as `<name>.sig`.
    pub signature_url: String,
    pub size: u64,
    pub sha256: String,
    /// whether the vendor published this sha256 (and it matched), besides the signature.
    #[serde(default)]
    pub sha256_published: bool,
}

/// What `mayu images fetch` verified, written as `mayu-image.json` before the folder is renamed
/// into place: a version folder without it was not made by a completed fetch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub version: String,
    pub channel: String,
    pub verified: bool,
    /// primary fingerprint of the OpenPGP key that made the signatures.
    pub verified_by: String,
    /// RFC 3339.
    pub fetched_at: String,
    pub files: Vec<FileRecord>,
}

/// Whether a version folder can be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionState {
    Verified { by: String },
    Unverified(String),
}

impl VersionState {
    pub fn is_verified(&self) -> bool {
        matches!(self, VersionState::Verified { .. })
    }
}

/// Reads a version folder's record and checks every recorded file is there at its recorded size
/// (hashing every boot would be too slow; the record was written only after hashing).
pub fn version_state(dir: &Path) -> VersionState {
    let text = match std::fs::read(dir.join(RECORD)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return VersionState::Unverified(format!("no {RECORD} (not made by mayu images fetch)"))
        }
        Err(e) => return VersionState::Unverified(format!("{RECORD}: {e}")),
    };
    let record: Record = match serde_json::from_slice(&text) {
        Ok(r) => r,
        Err(e) => return VersionState::Unverified(format!("{RECORD} does not parse: {e}")),
    };
    if !record.verified || record.files.is_empty() {
        return VersionState::Unverified(format!("{RECORD} records no verified files"));
    }
    for f in &record.files {
        match std::fs::metadata(dir.join(&f.name)) {
            Ok(m) if m.len() == f.size => {}
            Ok(m) => {
                return VersionState::Unverified(format!(
                    "{} is {} bytes, {} when verified",
                    f.name,
                    m.len(),
                    f.size
                ))
            }
            Err(_) => return VersionState::Unverified(format!("{} is missing", f.name)),
        }
    }
    VersionState::Verified {
        by: record.verified_by,
    }
}

/// Reads the record of a version folder.
pub fn read_record(dir: &Path) -> Option<Record> {
    std::fs::read(dir.join(RECORD))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
}

/// One version folder of an image.
#[derive(Debug, Clone)]
pub struct Version {
    pub name: String,
    pub dir: PathBuf,
    pub size: u64,
    pub state: VersionState,
}

/// What an image folder holds.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub dir: PathBuf,
    /// files directly in the folder (a local image), with sizes; notes (`*.md`) excluded.
    pub local_files: Vec<(String, u64)>,
    /// version folders, oldest first.
    pub versions: Vec<Version>,
    /// temp folders left by a fetch that did not finish.
    pub leftovers: Vec<PathBuf>,
}

impl Image {
    pub fn is_local(&self) -> bool {
        !self.local_files.is_empty()
    }

    pub fn version(&self, name: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.name == name)
    }

    pub fn newest_verified(&self) -> Option<&Version> {
        self.versions.iter().rev().find(|v| v.state.is_verified())
    }

    pub fn local_size(&self) -> u64 {
        self.local_files.iter().map(|(_, s)| s).sum()
    }
}

/// One path segment usable as a folder name and in a URL: no separators, no hidden names.
pub fn plain_segment(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
}

/// Version order: numeric runs compare as numbers (`4081.2.0` < `4152.0.0`, `9` < `10`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parts(s: &str) -> Vec<Result<u64, String>> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut digits = false;
        for c in s.chars() {
            let d = c.is_ascii_digit();
            if !cur.is_empty() && d != digits {
                out.push(if digits {
                    cur.parse().map_err(|_| cur.clone())
                } else {
                    Err(cur.clone())
                });
                cur.clear();
            }
            digits = d;
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(if digits {
                cur.parse().map_err(|_| cur.clone())
            } else {
                Err(cur)
            });
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(pb.iter()) {
        let o = match (x, y) {
            (Ok(x), Ok(y)) => x.cmp(y),
            (Ok(_), Err(_)) => Ordering::Greater,
            (Err(_), Ok(_)) => Ordering::Less,
            (Err(x), Err(y)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len()).then_with(|| a.cmp(b))
}

/// Bytes in the files directly in `dir`.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Reads one image folder.
pub fn scan(root: &Path, name: &str) -> io::Result<Image> {
    let dir = root.join(name);
    let mut image = Image {
        name: name.to_string(),
        dir: dir.clone(),
        local_files: Vec::new(),
        versions: Vec::new(),
        leftovers: Vec::new(),
    };
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(TEMP_PREFIX) {
            image.leftovers.push(entry.path());
            continue;
        }
        if file_name.starts_with('.') {
            continue;
        }
        // Follow symlinks: the lab may link a built kernel in.
        let meta = std::fs::metadata(entry.path());
        if meta.as_ref().is_ok_and(|m| m.is_dir()) {
            dirs.push((file_name, entry.path()));
        } else if !file_name.ends_with(".md") {
            let size = meta.map(|m| m.len()).unwrap_or(0);
            image.local_files.push((file_name, size));
        }
    }
    // In a local image a folder is the image's own business, unless a fetch made it.
    let local = !image.local_files.is_empty();
    for (name, path) in dirs {
        if local && !path.join(RECORD).exists() {
            continue;
        }
        image.versions.push(Version {
            size: dir_size(&path),
            state: version_state(&path),
            name,
            dir: path,
        });
    }
    image.local_files.sort();
    image
        .versions
        .sort_by(|a, b| compare_versions(&a.name, &b.name));
    Ok(image)
}

/// Every image folder under `root`, by name.
pub fn scan_all(root: &Path) -> io::Result<Vec<Image>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        out.push(scan(root, &name)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A machine's pinned version, when its overrides name one.
pub fn pinned_version(overrides: &Env) -> Option<String> {
    match overrides.get(VERSION_OVERRIDE)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Per image folder: its mtime when last looked at, when that was, and the newest version.
type NewestCache = HashMap<PathBuf, (Option<SystemTime>, std::time::Instant, Option<String>)>;

/// How long an answer stands before the folder is looked at again. A fetch or gc in this
/// process forgets it at once ([`forget_newest`]); one by `mayu images` beside a running mayu
/// is seen within this.
const NEWEST_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

fn newest_cache() -> &'static Mutex<NewestCache> {
    static CACHE: OnceLock<Mutex<NewestCache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The newest verified version of an image, cached per folder until the folder changes: a
/// fetch and a gc both rename inside it, which moves its mtime. Renders call this on every
/// request, so the folder is looked at (one `stat`) at most every [`NEWEST_RECHECK`].
pub fn newest_verified_cached(root: &Path, name: &str) -> Option<String> {
    let dir = root.join(name);
    if let Some((_, checked, newest)) = newest_cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&dir)
    {
        if checked.elapsed() < NEWEST_RECHECK {
            return newest.clone();
        }
    }
    let mtime = std::fs::metadata(&dir).and_then(|m| m.modified()).ok();
    let cache = newest_cache();
    if let Some((seen, checked, newest)) = cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&dir)
    {
        if *seen == mtime && mtime.is_some() {
            *checked = std::time::Instant::now();
            return newest.clone();
        }
    }
    let newest = scan(root, name)
        .ok()
        .and_then(|i| i.newest_verified().map(|v| v.name.clone()));
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(dir, (mtime, std::time::Instant::now(), newest.clone()));
    newest
}

/// Drops what [`newest_verified_cached`] knows of the image folder holding `path` (or of
/// `path` itself): a fetch or gc just changed it.
pub fn forget_newest(path: &Path) {
    let mut cache = newest_cache().lock().unwrap_or_else(|p| p.into_inner());
    cache.retain(|dir, _| !(path.starts_with(dir) || dir.starts_with(path)));
}

/// The version a machine of `profile` boots: its own pin, else the profile's, else the newest
/// verified one; `None` for a local image (files directly in the image folder).
pub fn chosen_version(config: &Config, profile: &Profile, overrides: &Env) -> Option<String> {
    pinned_version(overrides)
        .filter(|v| plain_segment(v))
        .or_else(|| profile.image_version.clone())
        .or_else(|| newest_verified_cached(&config.images, &profile.image))
}

/// The path below `/assets/` a machine's kernel and initrd are served from.
pub fn asset_dir(config: &Config, profile: &Profile, overrides: &Env) -> String {
    match chosen_version(config, profile, overrides) {
        Some(v) => format!("{}/{v}", profile.image),
        None => profile.image.clone(),
    }
}

/// Problems with the profiles' images: errors (a missing or unverified version a profile would
/// boot), located at the profile's `image:` key, and warnings.
pub fn check_profiles(config: &Config) -> (Vec<ConfigError>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut warned = std::collections::HashSet::new();
    for p in &config.profiles {
        let Ok(image) = scan(&config.images, &p.image) else {
            // A missing folder is already a config error.
            continue;
        };
        let mut err = |message: String| {
            errors.push(ConfigError {
                file: config.file.clone(),
                line: p.image_at.0,
                column: p.image_at.1,
                message,
            })
        };
        let have = || {
            let names: Vec<&str> = image.versions.iter().map(|v| v.name.as_str()).collect();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        match &p.image_version {
            Some(v) => match image.version(v) {
                None => err(format!(
                    "profile `{}`: image `{}` has no version `{v}` in {} (have: {}); fetch it with `mayu images fetch {} --version {v}`",
                    p.name,
                    p.image,
                    image.dir.display(),
                    have(),
                    p.image
                )),
                Some(ver) => {
                    if let VersionState::Unverified(why) = &ver.state {
                        err(format!(
                            "profile `{}`: image `{}` version `{v}` is not verified: {why}",
                            p.name, p.image
                        ))
                    }
                }
            },
            None if !image.versions.is_empty() && image.newest_verified().is_none() => {
                let why: Vec<String> = image
                    .versions
                    .iter()
                    .map(|v| match &v.state {
                        VersionState::Unverified(w) => format!("{}: {w}", v.name),
                        VersionState::Verified { .. } => v.name.clone(),
                    })
                    .collect();
                err(format!(
                    "profile `{}`: image `{}` has no verified version ({})",
                    p.name,
                    p.image,
                    why.join("; ")
                ))
            }
            // An empty image folder provisions nothing: `mayu check` must not say ok. (The
            // console still starts, with this as a warning, so the other profiles serve.)
            None if image.versions.is_empty() && !image.is_local() => err(format!(
                "profile `{}`: image `{}` is empty ({}); its machines cannot boot until it is filled: {}",
                p.name,
                p.image,
                image.dir.display(),
                fill_hint(&p.image)
            )),
            None => {}
        }
        for v in &image.versions {
            if let VersionState::Unverified(why) = &v.state {
                if warned.insert(format!("{}/{}", p.image, v.name)) {
                    warnings.push(format!(
                        "warning: {}/{} is not verified ({why}); it is never served",
                        p.image, v.name
                    ));
                }
            }
        }
    }
    (errors, warnings)
}

/// How an empty image folder gets filled.
fn fill_hint(image: &str) -> String {
    match image {
        "flatcar" | "fedora-coreos" => format!("run `mayu images fetch {image}`"),
        "discovery" => "run scripts/build-discovery.sh".into(),
        "test" => "run scripts/build-test-image.sh".into(),
        _ => format!(
            "put its kernel and initrd in images/{image}/, or fetch a vendor image (`mayu images fetch`)"
        ),
    }
}

/// What the operator should hear at start: profiles whose image cannot boot, and machines pinned
/// to a version that is missing or unverified.
pub fn startup_warnings(config: &Config, machines: &[Machine]) -> Vec<String> {
    let (errors, warnings) = check_profiles(config);
    let mut out: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    out.extend(
        warnings
            .into_iter()
            .map(|w| w.trim_start_matches("warning: ").to_string()),
    );
    for m in machines {
        let Some(v) = pinned_version(&m.overrides) else {
            continue;
        };
        let Some(p) = m.profile.as_deref().and_then(|p| config.profile(p)) else {
            continue;
        };
        if !plain_segment(&v) {
            out.push(format!(
                "machine {} pins image version `{v}`, which is not a version name; it is ignored",
                m.id
            ));
            continue;
        }
        let dir = config.images.join(&p.image).join(&v);
        if !dir.is_dir() {
            out.push(format!(
                "machine {} pins {}/{v}, which is not there; run `mayu images fetch {} --version {v}`",
                m.id, p.image, p.image
            ));
        } else if let VersionState::Unverified(why) = version_state(&dir) {
            out.push(format!(
                "machine {} pins {}/{v}, which is not verified: {why}",
                m.id, p.image
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        assert_eq!(compare_versions("4081.2.0", "4152.0.0"), Ordering::Less);
        assert_eq!(compare_versions("9.1", "10.0"), Ordering::Less);
        assert_eq!(
            compare_versions("42.20250512.3.0", "42.20250427.3.0"),
            Ordering::Greater
        );
        assert_eq!(compare_versions("1.0", "1.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.0", "1.0.1"), Ordering::Less);
    }

    #[test]
    fn segments() {
        assert!(plain_segment("4081.2.0"));
        for bad in ["", ".", "..", "a/b", ".fetch-1", "a b", "x\0"] {
            assert!(!plain_segment(bad), "{bad:?}");
        }
    }
}
