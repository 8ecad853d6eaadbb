//! The TFTP root: which boot programs it must hold for the configured network, whether
//! dnsmasq can serve them, and filling it from Debian's `ipxe` package.
//!
//! dnsmasq runs as root here (see `templates/dnsmasq.conf`), and its manual says that then
//! "only files which have the world-readable bit set are accessible" over TFTP; a file the
//! operator copied in with mode 0600 would be refused with "Permission denied" at boot time
//! while every self-test passes. So the check looks at the mode bits, not at whether *we* can
//! read the file.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::config::{Config, DhcpMode};

use super::conf::BootPrograms;

/// Where Debian's `ipxe` package installs its network boot programs.
pub const DEBIAN_IPXE: &str = "/usr/lib/ipxe";

/// Where missing boot programs are copied from: `MAYU_IPXE_DIR` when set (a folder of your own
/// iPXE builds), else Debian's package.
pub fn source() -> PathBuf {
    std::env::var_os("MAYU_IPXE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_IPXE))
}

/// Programs Debian's `ipxe` package ships that a TFTP root can use.
const DEBIAN_PROGRAMS: [&str; 3] = ["undionly.kpxe", "ipxe.efi", "snponly.efi"];

/// One boot program the TFTP root is expected to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub file: String,
    /// the firmware that is handed this program.
    pub who: &'static str,
    /// a machine of this kind cannot boot without it; arm64 is optional because Debian ships
    /// no arm64 iPXE build.
    pub required: bool,
}

/// The boot programs the configured network hands out, the required ones first. Empty when
/// mayu runs no DHCP (and so hands no boot program to anyone).
pub fn programs(config: &Config) -> Vec<Program> {
    if config.network.dhcp.mode == DhcpMode::Off {
        return Vec::new();
    }
    let boot = BootPrograms::of(config);
    vec![
        Program {
            file: boot.bios,
            who: "BIOS",
            required: true,
        },
        Program {
            file: boot.efi64,
            who: "UEFI x86-64",
            required: true,
        },
        Program {
            file: boot.arm64,
            who: "arm64 UEFI",
            required: false,
        },
    ]
}

/// Something that keeps machines from getting their boot program over TFTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("TFTP root {} does not exist", .root.display())]
    NoRoot { root: PathBuf },
    #[error("TFTP root {} is not a folder", .root.display())]
    NotAFolder { root: PathBuf },
    #[error("{file} ({who} machines) is missing from {}", .root.display())]
    Missing {
        root: PathBuf,
        file: String,
        who: &'static str,
    },
    #[error("{} is not a regular file", .path.display())]
    NotAFile { path: PathBuf },
    #[error(
        "{} has mode {mode:04o}: dnsmasq, running as root, serves only world-readable files; run chmod a+r on it",
        .path.display()
    )]
    NotWorldReadable { path: PathBuf, mode: u32 },
}

/// What stops the required boot programs from being served (empty: all is well).
pub fn inspect(config: &Config) -> Vec<Problem> {
    inspect_root(&config.tftproot, &programs(config))
}

fn inspect_root(root: &Path, programs: &[Program]) -> Vec<Problem> {
    let required: Vec<&Program> = programs.iter().filter(|p| p.required).collect();
    if required.is_empty() {
        return Vec::new();
    }
    match fs::metadata(root) {
        Err(_) => {
            return vec![Problem::NoRoot {
                root: root.to_path_buf(),
            }]
        }
        Ok(m) if !m.is_dir() => {
            return vec![Problem::NotAFolder {
                root: root.to_path_buf(),
            }]
        }
        Ok(_) => {}
    }
    let mut problems = Vec::new();
    for p in required {
        let path = root.join(&p.file);
        match fs::metadata(&path) {
            Err(_) => problems.push(Problem::Missing {
                root: root.to_path_buf(),
                file: p.file.clone(),
                who: p.who,
            }),
            Ok(m) if !m.is_file() => problems.push(Problem::NotAFile { path }),
            Ok(m) if m.permissions().mode() & 0o004 == 0 => {
                problems.push(Problem::NotWorldReadable {
                    path,
                    mode: m.permissions().mode() & 0o7777,
                })
            }
            Ok(_) => {}
        }
    }
    problems
}

/// The optional programs the root lacks (`(file, who)`), for a note rather than an error.
pub fn missing_optional(config: &Config) -> Vec<(String, &'static str)> {
    programs(config)
        .into_iter()
        .filter(|p| !p.required && !config.tftproot.join(&p.file).is_file())
        .map(|p| (p.file, p.who))
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("cannot fill {}: {what}: {source}", .root.display())]
pub struct FillError {
    root: PathBuf,
    what: String,
    source: std::io::Error,
}

/// Copies every program Debian's package ships that `root` lacks from `source`, creating
/// `root` if needed. Each file is written under a temporary name, fsynced and renamed, so a
/// crash never leaves a half-written boot program under its real name. Returns the files
/// copied (empty when nothing was missing or `source` has none).
pub fn fill(root: &Path, source: &Path) -> Result<Vec<String>, FillError> {
    let err = |what: String| {
        let root = root.to_path_buf();
        move |source| FillError { root, what, source }
    };
    let wanted: Vec<&str> = DEBIAN_PROGRAMS
        .into_iter()
        .filter(|f| source.join(f).is_file() && !root.join(f).exists())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    fs::create_dir_all(root).map_err(err("create the folder".into()))?;
    // dnsmasq must be able to list and enter the root.
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))
        .map_err(err("make it world-readable".into()))?;
    let mut copied = Vec::new();
    for file in wanted {
        let bytes = fs::read(source.join(file)).map_err(err(format!("read {file}")))?;
        // World-readable: dnsmasq serves only files others may read.
        crate::atomic::write(&root.join(file), &bytes, 0o644)
            .map_err(err(format!("write {file}")))?;
        copied.push(file.to_string());
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programs() -> Vec<Program> {
        vec![
            Program {
                file: "undionly.kpxe".into(),
                who: "BIOS",
                required: true,
            },
            Program {
                file: "ipxe.efi".into(),
                who: "UEFI x86-64",
                required: true,
            },
            Program {
                file: "ipxe-arm64.efi".into(),
                who: "arm64 UEFI",
                required: false,
            },
        ]
    }

    fn source() -> tempfile::TempDir {
        let src = tempfile::tempdir().expect("tempdir");
        for f in DEBIAN_PROGRAMS {
            fs::write(src.path().join(f), format!("program {f}")).expect("write");
        }
        src
    }

    #[test]
    fn a_missing_root_is_one_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("tftproot");
        assert_eq!(
            inspect_root(&root, &programs()),
            vec![Problem::NoRoot { root: root.clone() }]
        );
    }

    #[test]
    fn missing_and_unreadable_programs_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::write(root.join("ipxe.efi"), "x").expect("write");
        fs::set_permissions(root.join("ipxe.efi"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let problems = inspect_root(root, &programs());
        assert_eq!(
            problems,
            vec![
                Problem::Missing {
                    root: root.to_path_buf(),
                    file: "undionly.kpxe".into(),
                    who: "BIOS",
                },
                Problem::NotWorldReadable {
                    path: root.join("ipxe.efi"),
                    mode: 0o600,
                },
            ]
        );
        assert!(problems[1].to_string().contains("chmod a+r"));
        // arm64 is optional: its absence is no problem.
        fs::write(root.join("undionly.kpxe"), "x").expect("write");
        fs::set_permissions(root.join("ipxe.efi"), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        assert_eq!(inspect_root(root, &programs()), vec![]);
    }

    #[test]
    fn fill_copies_only_what_is_missing_and_leaves_no_temp_files() {
        let src = source();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("tftproot");
        fs::create_dir(&root).expect("mkdir");
        fs::write(root.join("ipxe.efi"), "the operator's own build").expect("write");
        let copied = fill(&root, src.path()).expect("fill");
        assert_eq!(copied, vec!["undionly.kpxe", "snponly.efi"]);
        assert_eq!(
            fs::read_to_string(root.join("ipxe.efi")).expect("read"),
            "the operator's own build"
        );
        assert_eq!(
            fs::read_to_string(root.join("undionly.kpxe")).expect("read"),
            "program undionly.kpxe"
        );
        let mode = fs::metadata(root.join("undionly.kpxe"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<String> = fs::read_dir(&root)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains("mayu-tmp")), "{names:?}");
        // Filling again copies nothing.
        assert!(fill(&root, src.path()).expect("fill").is_empty());
        assert_eq!(inspect_root(&root, &programs()), vec![]);
    }
}
