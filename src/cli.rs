//! The one-shot commands of `mayu`: `check`, `render` and `import-mayu`. Each returns what it
//! found, or a [`CommandError`] written for the operator; the binary prints them and chooses
//! the exit code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::ConfigErrors;
use crate::engine::EngineError;
use crate::import::ImportReport;
use crate::templates::{self, Kind, TemplateError, TemplateSet};
use crate::{Config, Engine};

/// Why a one-shot command could not do its job. The message is what the operator reads: one
/// line per finding, each located where it can be.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Config(ConfigErrors),
    #[error("{}", lines(errors.iter().map(|e| dir.join(e.to_string()).display().to_string())))]
    Templates {
        dir: PathBuf,
        errors: Vec<TemplateError>,
    },
    #[error("{}: {error}", conf.display())]
    Dnsmasq {
        conf: PathBuf,
        error: crate::dnsmasq::CheckError,
    },
    #[error("{}", lines(problems.iter().map(|p| format!("{}: tftproot: {p}", config.display()))))]
    Tftproot {
        config: PathBuf,
        problems: Vec<String>,
    },
    #[error("{0}")]
    Engine(EngineError),
    #[error("unknown machine `{machine}`{}", did_you_mean(suggestions))]
    UnknownMachine {
        machine: String,
        suggestions: Vec<String>,
    },
    #[error("{0}")]
    Render(String),
    #[error("{0}")]
    Import(crate::import::ImportError),
    #[error("audit: {0}")]
    Audit(EngineError),
    /// `power:` names a secrets file mayu will not use (mode, owner, syntax).
    #[error("{}: power: {error}", config.display())]
    Power {
        config: PathBuf,
        error: crate::power::SecretsError,
    },
}

fn lines(each: impl Iterator<Item = String>) -> String {
    each.collect::<Vec<_>>().join("\n")
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("\ndid you mean: {}", suggestions.join(", "))
    }
}

/// A configuration that passed every check, and what the operator should still know.
#[derive(Debug)]
pub struct CheckReport {
    /// the checked configuration, for the summary.
    pub config: Config,
    /// warnings and notes in the order found, each starting `warning:` or `note:`.
    pub findings: Vec<String>,
}

/// Validates the config, its images, every template, the dnsmasq config and the TFTP root.
pub fn check(path: &Path) -> Result<CheckReport, CommandError> {
    let c = Config::load(path).map_err(CommandError::Config)?;
    // A profile whose image version is missing or unverified, located at its `image:` key.
    let (image_errors, image_warnings) = crate::images::check_profiles(&c);
    if !image_errors.is_empty() {
        return Err(CommandError::Config(ConfigErrors(image_errors)));
    }
    if let Err(errors) = templates::build(&c) {
        return Err(CommandError::Templates {
            dir: c.templates.clone(),
            errors,
        });
    }
    use crate::dnsmasq::{CheckError, SelfTestError};
    let mut findings = image_warnings;
    match crate::dnsmasq::check(&c) {
        Ok(()) => {}
        // A machine without dnsmasq can still check its config; the service will say so too.
        Err(CheckError::SelfTest(e @ SelfTestError::NotFound { .. })) => {
            findings.push(format!("warning: {e}; the dnsmasq self-test was skipped"))
        }
        Err(error) => {
            return Err(CommandError::Dnsmasq {
                conf: c.templates.join("dnsmasq.conf"),
                error,
            })
        }
    }
    match tftproot_findings(&c) {
        Ok(mut notes) => findings.append(&mut notes),
        Err(problems) => {
            return Err(CommandError::Tftproot {
                config: path.to_path_buf(),
                problems,
            })
        }
    }
    findings.extend(unreadable_machine_files(&c));
    if let Some(p) = &c.power {
        crate::power::load_secrets(p, &c.inventory).map_err(|error| CommandError::Power {
            config: path.to_path_buf(),
            error,
        })?;
        if !crate::power::ipmitool_found(&p.ipmitool) {
            findings.push(format!(
                "warning: power: {} not found; power control fails until Debian's ipmitool is installed",
                p.ipmitool.display()
            ));
        }
    }
    Ok(CheckReport {
        config: c,
        findings,
    })
}

/// Machine files mayu cannot read: they keep their place (id, MACs, profile seat) until an
/// operator repairs or removes them.
fn unreadable_machine_files(c: &Config) -> Vec<String> {
    if !c.inventory.is_dir() {
        return Vec::new();
    }
    match crate::inventory::files::load_dir(&c.inventory) {
        Ok((_, problems)) => problems
            .iter()
            .map(|p| {
                format!(
                    "warning: machine file {} cannot be read ({}); its id, MACs and profile seat stay reserved until it is repaired or removed",
                    p.file.display(),
                    crate::text::escape_control(&p.error)
                )
            })
            .collect(),
        Err(e) => vec![format!(
            "warning: cannot read the inventory {}: {e}",
            c.inventory.display()
        )],
    }
}

/// The TFTP root's problems: errors, or notes when starting mayu fixes them (it fills
/// missing programs from Debian's `ipxe` package) or they only concern optional architectures.
fn tftproot_findings(c: &Config) -> Result<Vec<String>, Vec<String>> {
    use crate::dnsmasq::tftproot::{self, Problem};
    let source = tftproot::source();
    let fix = "install Debian's ipxe package (mayu then fills the folder at start) or run scripts/fill-tftproot.sh";
    let required: Vec<String> = tftproot::programs(c)
        .into_iter()
        .filter(|p| p.required)
        .map(|p| p.file)
        .collect();
    let mut errors = Vec::new();
    let mut filled_at_start = Vec::new();
    for problem in tftproot::inspect(c) {
        let from_debian = |f: &str| source.join(f).is_file();
        match &problem {
            Problem::NoRoot { .. } if required.iter().all(|f| from_debian(f)) => {
                filled_at_start.extend(required.iter().cloned())
            }
            Problem::Missing { file, .. } if from_debian(file) => {
                filled_at_start.push(file.clone())
            }
            Problem::NoRoot { .. } | Problem::Missing { .. } => {
                errors.push(format!("{problem}; {fix}"))
            }
            _ => errors.push(problem.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut notes = Vec::new();
    if !filled_at_start.is_empty() {
        notes.push(format!(
            "note: {} lacks {}; mayu copies them from {} at start",
            c.tftproot.display(),
            filled_at_start.join(", "),
            source.display()
        ));
    }
    for (file, who) in tftproot::missing_optional(c) {
        notes.push(format!(
            "note: no {file} in {}: {who} machines cannot boot (Debian ships no arm64 iPXE; see scripts/fill-tftproot.sh)",
            c.tftproot.display()
        ));
    }
    Ok(notes)
}

/// Exactly what a machine would be served for a template kind (or a named template).
pub fn render(config_path: &Path, machine: &str, template: &str) -> Result<String, CommandError> {
    let config = Config::load(config_path).map_err(CommandError::Config)?;
    // Read-only: a running mayu holds the inventory, and rendering changes nothing.
    let engine = Engine::open_read_only(config.clone()).map_err(CommandError::Engine)?;
    let Some(m) = engine.find(machine) else {
        return Err(CommandError::UnknownMachine {
            machine: machine.to_string(),
            suggestions: engine.suggest(machine),
        });
    };
    let boot: SocketAddr = config.http.boot;
    match Kind::parse(template) {
        Some(kind) => match templates::Templates::load(&config) {
            Ok(t) => t.render(boot, &m, kind).map_err(|e| e.to_string()),
            Err(errs) => Err(errs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")),
        },
        None => render_named(&config, boot, &m, template),
    }
    .map_err(CommandError::Render)
}

fn render_named(
    config: &Config,
    boot: SocketAddr,
    m: &crate::machine::Machine,
    name: &str,
) -> Result<String, String> {
    let set = TemplateSet::load(&config.templates).map_err(|e| {
        e.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    if !set.has(name) {
        return Err(format!(
            "no template `{name}`; give a kind (ipxe, ignition, cloud-config, metadata) or one of: {}",
            set.names.join(", ")
        ));
    }
    let profile = m.profile.as_deref().and_then(|p| config.profile(p));
    let ctx = templates::context::build(config, boot, profile, m)
        .map_err(|e| format!("machine {}: {e}", m.id))?;
    set.render(name, Kind::Metadata, &ctx)
        .map_err(|e| e.to_string())
}

/// `mayu import-mayu DIR`: imports what it can and reports what it skipped, with why. With
/// `dry_run` nothing is written: the report's `planned` holds what would be.
pub fn import_mayu(
    config_path: &Path,
    dir: &Path,
    dry_run: bool,
) -> Result<ImportReport, CommandError> {
    let config = Config::load(config_path).map_err(CommandError::Config)?;
    let engine = Engine::open(config).map_err(CommandError::Engine)?;
    let report =
        crate::import::import_dir_with(&engine, dir, dry_run).map_err(CommandError::Import)?;
    engine.flush().map_err(CommandError::Audit)?;
    Ok(report)
}
