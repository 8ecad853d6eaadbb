//! `mayu images fetch|list|gc` for a person at a terminal: each prints and returns the process
//! exit code (0 ok, 1 failure).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::fetch::{self, FetchRequest, Outcome, Vendor};
use super::list;
use crate::config::Config;
use crate::machine::Machine;

/// Only the `images:` key: fetching must work while the config still names an image folder that
/// does not exist yet (that is a config error until the fetch creates it).
#[derive(Deserialize)]
struct ImagesOnly {
    #[serde(default)]
    images: Option<PathBuf>,
}

fn images_root(config_path: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| format!("{}: cannot read: {e}", config_path.display()))?;
    let raw: ImagesOnly =
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let images = raw.images.unwrap_or_else(|| "images".into());
    Ok(crate::config::resolve_for(config_path, &images))
}

/// Arguments of `mayu images fetch`.
#[derive(Debug, Clone)]
pub struct FetchArgs {
    pub name: String,
    pub channel: Option<String>,
    pub version: Option<String>,
    pub mirror: Option<String>,
    pub key: Option<PathBuf>,
    pub disk_image: bool,
}

pub fn fetch(config_path: &Path, args: FetchArgs) -> i32 {
    let vendor = match Vendor::parse(&args.name) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("mayu images fetch: {e}");
            return 1;
        }
    };
    let root = match images_root(config_path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if args.disk_image && !matches!(vendor, Vendor::Flatcar) {
        eprintln!("--disk-image is for flatcar (flatcar-install); fedora-coreos installs with coreos-installer from its own image");
        return 2;
    }
    let req = FetchRequest {
        vendor,
        channel: args.channel.unwrap_or_else(|| "stable".into()),
        version: args.version,
        mirror: args.mirror,
        key: args.key,
        progress: fetch::stderr_is_terminal(),
        disk_image: args.disk_image,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mayu images fetch: cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(fetch::fetch(&root, &req)) {
        Ok(Outcome::Fetched { record, dir }) => {
            println!(
                "fetched {} {} ({} channel) into {}",
                record.name,
                record.version,
                record.channel,
                dir.display()
            );
            for f in &record.files {
                println!(
                    "  {:<44} {:>10}  sha256 {}",
                    f.name,
                    list::human_size(f.size),
                    f.sha256
                );
            }
            println!("  verified: signatures by {}", record.verified_by);
            0
        }
        Ok(Outcome::AlreadyThere { version, dir }) => {
            println!(
                "{} {version} is already there, verified: {}",
                vendor.name(),
                dir.display()
            );
            0
        }
        Err(e) => {
            eprintln!(
                "mayu images fetch {}: {e}\nnothing was installed under {}",
                vendor.name(),
                root.join(vendor.name()).display()
            );
            1
        }
    }
}

fn load(config_path: &Path) -> Result<(Config, Vec<super::Image>, Vec<Machine>), String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let images =
        super::scan_all(&config.images).map_err(|e| format!("{}: {e}", config.images.display()))?;
    let machines = match crate::inventory::files::load_dir(&config.inventory) {
        Ok((m, _problems)) => m,
        // No inventory yet: nothing pins anything.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", config.inventory.display())),
    };
    Ok((config, images, machines))
}

pub fn list(config_path: &Path) -> i32 {
    let (config, images, machines) = match load(config_path) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let rows = list::rows(&config, &images, &machines);
    println!(
        "{:<16} {:<20} {:>10}  {:<58} USED BY",
        "IMAGE", "VERSION", "SIZE", "STATE"
    );
    for r in rows {
        println!(
            "{:<16} {:<20} {:>10}  {:<58} {}",
            r.image,
            r.version.as_deref().unwrap_or("(local)"),
            list::human_size(r.size),
            r.state,
            r.users.describe()
        );
    }
    for i in &images {
        for l in &i.leftovers {
            println!(
                "  note: {} is left by an unfinished fetch; the next fetch or gc removes it",
                l.display()
            );
        }
    }
    0
}

pub fn gc(config_path: &Path, dry_run: bool) -> i32 {
    let (config, images, machines) = match load(config_path) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut failed = false;
    let mut freed = 0u64;
    let victims = list::unused(&config, &images, &machines);
    for (path, what) in victims {
        if fetch::leftover_in_use(&path) {
            continue;
        }
        let size = dir_size(&path);
        if dry_run {
            println!("would remove {what} ({})", list::human_size(size));
            freed += size;
            continue;
        }
        match fetch::remove_atomically(&path) {
            Ok(()) => {
                println!("removed {what} ({})", list::human_size(size));
                freed += size;
            }
            Err(e) => {
                eprintln!("cannot remove {}: {e}", path.display());
                failed = true;
            }
        }
    }
    println!(
        "{} {}",
        if dry_run { "would free" } else { "freed" },
        list::human_size(freed)
    );
    i32::from(failed)
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
