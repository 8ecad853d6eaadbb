//! Which image versions are there and who uses them: what `mayu images list` shows and what
//! `mayu images gc` removes, as values ([`Catalog`]); the console prints them.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use super::{pinned_version, plain_segment, Image, VersionState};
use crate::config::{Config, ConfigErrors};
use crate::machine::Machine;

/// Why a [`Catalog`] could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Config(ConfigErrors),
    /// the images folder or the inventory.
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// Everything `list` and `gc` look at: the checked config, the image folders and the machines
/// (whose overrides may pin a version).
#[derive(Debug)]
pub struct Catalog {
    pub config: Config,
    pub images: Vec<Image>,
    pub machines: Vec<Machine>,
}

/// One folder gc removed (or, in a dry run, would remove: `result` is then `Ok`).
#[derive(Debug)]
pub struct Removal {
    pub path: PathBuf,
    /// `image/version`, or `image/name (unfinished fetch)`.
    pub what: String,
    pub size: u64,
    pub result: io::Result<()>,
}

impl Catalog {
    /// Reads the config at `config_path`, its images folder and its inventory (none yet: no
    /// machine pins anything).
    pub fn load(config_path: &Path) -> Result<Catalog, CatalogError> {
        let config = Config::load(config_path).map_err(CatalogError::Config)?;
        let images = super::scan_all(&config.images).map_err(|source| CatalogError::Read {
            path: config.images.clone(),
            source,
        })?;
        let machines = match crate::inventory::files::load_dir(&config.inventory) {
            Ok((m, _problems)) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(CatalogError::Read {
                    path: config.inventory.clone(),
                    source,
                })
            }
        };
        Ok(Catalog {
            config,
            images,
            machines,
        })
    }

    /// The rows of `mayu images list`.
    pub fn rows(&self) -> Vec<Row> {
        rows(&self.config, &self.images, &self.machines)
    }

    /// Temp folders left by fetches that did not finish.
    pub fn leftovers(&self) -> impl Iterator<Item = &Path> {
        self.images
            .iter()
            .flat_map(|i| i.leftovers.iter().map(PathBuf::as_path))
    }

    /// Removes what nothing uses ([`unused`]), one folder at a time, each reported to `each`
    /// as it is done; a dry run removes nothing and reports what it would remove. The temp
    /// folder of a fetch still running is left alone.
    pub fn gc(&self, dry_run: bool, mut each: impl FnMut(Removal)) {
        for (path, what) in unused(&self.config, &self.images, &self.machines) {
            if super::fetch::leftover_in_use(&path) {
                continue;
            }
            let size = super::dir_size(&path);
            let result = if dry_run {
                Ok(())
            } else {
                super::fetch::remove_atomically(&path)
            };
            each(Removal {
                path,
                what,
                size,
                result,
            });
        }
    }
}

/// Who boots one image version (or a local image, version `None`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Users {
    /// profiles that boot it (by their pin, or as the newest verified version).
    pub profiles: BTreeSet<String>,
    /// machines whose own `image_version` override pins it.
    pub pinned: BTreeSet<String>,
}

impl Users {
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty() && self.pinned.is_empty()
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.profiles.is_empty() {
            parts.push(format!(
                "profile {}",
                self.profiles.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !self.pinned.is_empty() {
            parts.push(format!(
                "machine {}",
                self.pinned.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join("; ")
        }
    }
}

pub type UsageKey = (String, Option<String>);

/// For every (image, version) something uses, who does. Versions are resolved from what is on
/// disk now (`images` as scanned), as a render would.
pub fn usage(config: &Config, images: &[Image], machines: &[Machine]) -> BTreeMap<UsageKey, Users> {
    let mut out: BTreeMap<UsageKey, Users> = BTreeMap::new();
    let newest = |name: &str| {
        images
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.newest_verified())
            .map(|v| v.name.clone())
    };
    for p in &config.profiles {
        let version = p.image_version.clone().or_else(|| newest(&p.image));
        out.entry((p.image.clone(), version))
            .or_default()
            .profiles
            .insert(p.name.clone());
    }
    for m in machines {
        let Some(v) = pinned_version(&m.overrides).filter(|v| plain_segment(v)) else {
            continue;
        };
        match m.profile.as_deref().and_then(|p| config.profile(p)) {
            Some(p) => {
                out.entry((p.image.clone(), Some(v)))
                    .or_default()
                    .pinned
                    .insert(m.id.to_string());
            }
            // Without a profile the pin is kept for every image that has that version:
            // gc must not remove what the next assignment may boot.
            None => {
                for i in images.iter().filter(|i| i.version(&v).is_some()) {
                    out.entry((i.name.clone(), Some(v.clone())))
                        .or_default()
                        .pinned
                        .insert(m.id.to_string());
                }
            }
        }
    }
    out
}

/// One row of `mayu images list`.
#[derive(Debug, Clone)]
pub struct Row {
    pub image: String,
    /// `None` for a local image.
    pub version: Option<String>,
    pub size: u64,
    pub state: String,
    pub users: Users,
}

pub fn rows(config: &Config, images: &[Image], machines: &[Machine]) -> Vec<Row> {
    let used = usage(config, images, machines);
    let users = |k: UsageKey| used.get(&k).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for i in images {
        if i.is_local() || i.versions.is_empty() {
            out.push(Row {
                image: i.name.clone(),
                version: None,
                size: i.local_size(),
                state: if i.is_local() {
                    "local (no signature needed)".into()
                } else {
                    "empty".into()
                },
                users: users((i.name.clone(), None)),
            });
        }
        for v in &i.versions {
            out.push(Row {
                image: i.name.clone(),
                version: Some(v.name.clone()),
                size: v.size,
                state: match &v.state {
                    VersionState::Verified { by } => format!("verified by {by}"),
                    VersionState::Unverified(why) => format!("UNVERIFIED: {why}"),
                },
                users: users((i.name.clone(), Some(v.name.clone()))),
            });
        }
    }
    // Versions a profile or machine asks for that are not here: they cannot boot.
    for ((image, version), who) in &used {
        let Some(v) = version else { continue };
        let present = images
            .iter()
            .any(|i| i.name == *image && i.version(v).is_some());
        if !present {
            out.push(Row {
                image: image.clone(),
                version: Some(v.clone()),
                size: 0,
                state: format!("MISSING: run `mayu images fetch {image} --version {v}`"),
                users: who.clone(),
            });
        }
    }
    out
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Version folders a fetch made that nothing uses (and leftovers of unfinished fetches): what
/// gc removes. A folder without a record was put there by hand and is left alone.
pub fn unused(config: &Config, images: &[Image], machines: &[Machine]) -> Vec<(PathBuf, String)> {
    let used = usage(config, images, machines);
    let mut out = Vec::new();
    for i in images {
        for v in &i.versions {
            if !used.contains_key(&(i.name.clone(), Some(v.name.clone())))
                && v.dir.join(super::RECORD).exists()
            {
                out.push((v.dir.clone(), format!("{}/{}", i.name, v.name)));
            }
        }
        for l in &i.leftovers {
            let name = l
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((l.clone(), format!("{}/{name} (unfinished fetch)", i.name)));
        }
    }
    out
}
