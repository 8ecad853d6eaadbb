//! `mayu images fetch|list|gc` as the operator sees them: the arguments, what
//! [`mayu::images`] fetched, found or removed, printed, and the exit code (0 ok, 1 failure,
//! 2 arguments that do not fit together).

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mayu::images::fetch::{self, FetchRequest, Outcome, Progress, Vendor};
use mayu::images::list::{human_size, Catalog, Removal};

#[derive(Subcommand)]
pub enum ImagesCommand {
    /// download a release's PXE kernel and initrd, verify their signatures, record the result
    Fetch(FetchArgs),
    /// image versions with sizes, verification state and the profiles and machines using them
    List,
    /// remove image versions no profile or machine uses
    Gc {
        /// only print what would be removed
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args)]
pub struct FetchArgs {
    /// flatcar or fedora-coreos
    name: String,
    /// flatcar: stable, beta, alpha, lts; fedora-coreos: stable, testing, next
    #[arg(long)]
    channel: Option<String>,
    /// a release (default: the channel's current one)
    #[arg(long)]
    version: Option<String>,
    /// base URL to fetch from instead of the vendor's
    #[arg(long)]
    mirror: Option<String>,
    /// trust this OpenPGP key file instead of the vendor key shipped with mayu
    #[arg(long)]
    key: Option<PathBuf>,
    /// flatcar: also the disk image flatcar-install writes (install-to-disk profiles)
    #[arg(long)]
    disk_image: bool,
}

/// Runs one `mayu images` command against the config at `config`.
pub fn run(config: &Path, command: ImagesCommand) -> ExitCode {
    match command {
        ImagesCommand::Fetch(args) => fetch(config, args),
        ImagesCommand::List => list(config),
        ImagesCommand::Gc { dry_run } => gc(config, dry_run),
    }
}

fn fetch(config: &Path, args: FetchArgs) -> ExitCode {
    let vendor = match Vendor::parse(&args.name) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("mayu images fetch: {e}");
            return ExitCode::FAILURE;
        }
    };
    let root = match fetch::images_root(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if args.disk_image && !matches!(vendor, Vendor::Flatcar) {
        eprintln!("--disk-image is for flatcar (flatcar-install); fedora-coreos installs with coreos-installer from its own image");
        return ExitCode::from(2);
    }
    let req = FetchRequest {
        vendor,
        channel: args.channel.unwrap_or_else(|| "stable".into()),
        version: args.version,
        mirror: args.mirror,
        key: args.key,
        disk_image: args.disk_image,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mayu images fetch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let terminal = std::io::stderr().is_terminal();
    let mut show = |p: Progress<'_>| show_progress(p, terminal);
    match runtime.block_on(fetch::fetch(&root, &req, &mut show)) {
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
                    human_size(f.size),
                    f.sha256
                );
            }
            println!("  verified: signatures by {}", record.verified_by);
            ExitCode::SUCCESS
        }
        Ok(Outcome::AlreadyThere { version, dir }) => {
            println!(
                "{} {version} is already there, verified: {}",
                vendor.name(),
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "mayu images fetch {}: {e}\nnothing was installed under {}",
                vendor.name(),
                root.join(vendor.name()).display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Progress on stderr, as [`progress_text`] writes it.
fn show_progress(p: Progress<'_>, terminal: bool) {
    if let Some(text) = progress_text(p, terminal) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }
}

/// What a fetch's progress puts on stderr: a removed leftover always; downloads only on a
/// terminal, one line per file redrawn in place (`\r`) and ended when the file is complete.
fn progress_text(p: Progress<'_>, terminal: bool) -> Option<String> {
    match p {
        Progress::RemovedLeftover(path) => Some(format!(
            "removed {}, left by an earlier fetch that did not finish\n",
            path.display()
        )),
        _ if !terminal => None,
        Progress::Started { role, url } => Some(format!("{role} {url}\n")),
        Progress::Received {
            file,
            got,
            expected,
        } => {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            Some(match expected {
                Some(n) if n > 0 => format!(
                    "\r  {file}: {:.1} / {:.1} MiB ({}%)",
                    mib(got),
                    mib(n),
                    got * 100 / n
                ),
                _ => format!("\r  {file}: {:.1} MiB", mib(got)),
            })
        }
        Progress::Finished { .. } => Some("\n".into()),
    }
}

fn load(config: &Path) -> Result<Catalog, ExitCode> {
    Catalog::load(config).map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })
}

fn list(config: &Path) -> ExitCode {
    let catalog = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    println!(
        "{:<16} {:<20} {:>10}  {:<58} USED BY",
        "IMAGE", "VERSION", "SIZE", "STATE"
    );
    for r in catalog.rows() {
        println!(
            "{:<16} {:<20} {:>10}  {:<58} {}",
            r.image,
            r.version.as_deref().unwrap_or("(local)"),
            human_size(r.size),
            r.state,
            r.users.describe()
        );
    }
    for l in catalog.leftovers() {
        println!(
            "  note: {} is left by an unfinished fetch; the next fetch or gc removes it",
            l.display()
        );
    }
    ExitCode::SUCCESS
}

fn gc(config: &Path, dry_run: bool) -> ExitCode {
    let catalog = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut failed = false;
    let mut freed = 0u64;
    catalog.gc(dry_run, |r: Removal| match r.result {
        Ok(()) => {
            let verb = if dry_run { "would remove" } else { "removed" };
            println!("{verb} {} ({})", r.what, human_size(r.size));
            freed += r.size;
        }
        Err(e) => {
            eprintln!("cannot remove {}: {e}", r.path.display());
            failed = true;
        }
    });
    println!(
        "{} {}",
        if dry_run { "would free" } else { "freed" },
        human_size(freed)
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn downloads_are_drawn_on_a_terminal_only_and_leftovers_always() {
        let started = Progress::Started {
            role: "kernel",
            url: "http://mirror/vmlinuz",
        };
        let half = Progress::Received {
            file: "vmlinuz",
            got: 3 * MIB,
            expected: Some(6 * MIB),
        };
        let no_length = Progress::Received {
            file: "vmlinuz",
            got: MIB / 2,
            expected: None,
        };
        let done = Progress::Finished { file: "vmlinuz" };
        let gone = Progress::RemovedLeftover(Path::new("/images/flatcar/.fetch-1-x"));

        let on_terminal: Vec<_> = [started, half, no_length, done, gone]
            .into_iter()
            .map(|p| progress_text(p, true))
            .collect();
        assert_eq!(
            on_terminal,
            [
                Some("kernel http://mirror/vmlinuz\n".to_string()),
                Some("\r  vmlinuz: 3.0 / 6.0 MiB (50%)".into()),
                Some("\r  vmlinuz: 0.5 MiB".into()),
                Some("\n".into()),
                Some(
                    "removed /images/flatcar/.fetch-1-x, left by an earlier fetch that did not finish\n"
                        .into()
                ),
            ]
        );
        for p in [started, half, done] {
            assert_eq!(progress_text(p, false), None);
        }
        assert!(progress_text(gone, false).is_some());
    }
}
