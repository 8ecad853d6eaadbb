//! The one-shot commands of `mayu` (`check`, `render`, `import-mayu`; `images` in [`images`],
//! `inventory push|pull` in [`inventory`])
//! as the operator sees them: what [`mayu::cli`] found, printed, and the exit code (0 ok,
//! 1 failure).

pub mod images;
pub mod inventory;

use std::path::Path;
use std::process::ExitCode;

use mayu::cli::{self, CheckReport, CommandError};
use mayu::import::ImportReport;

/// The config at `path` and a runtime to run on, or (printed, prefixed with `who`) why not.
pub fn config_and_runtime(
    path: &Path,
    who: &str,
) -> Result<(mayu::Config, tokio::runtime::Runtime), ExitCode> {
    // Config errors print before any terminal is taken, where the operator can read them.
    let config = mayu::Config::load(path).map_err(|errs| {
        eprintln!("{errs}");
        ExitCode::FAILURE
    })?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("{who}: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })?;
    Ok((config, runtime))
}

fn failed(e: &CommandError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::FAILURE
}

/// `mayu check`: `<config>: ok`, the findings, then a summary of what the config sets up.
pub fn check(path: &Path) -> ExitCode {
    match cli::check(path) {
        Ok(report) => {
            println!("{}", summary(path, &report));
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

fn summary(path: &Path, report: &CheckReport) -> String {
    let c = &report.config;
    let mut out = vec![format!("{}: ok", path.display())];
    out.extend(report.findings.iter().map(|f| format!("  {f}")));
    let net = &c.network;
    out.push(format!(
        "  network    {}/{} on {} (dhcp {:?}{})",
        net.address,
        net.prefix,
        net.interface,
        net.dhcp.mode,
        net.ranges()
            .iter()
            .map(|(a, b)| format!(", {a}–{b}"))
            .collect::<String>()
    ));
    out.push(format!("  boot http  {}   api {}", c.http.boot, c.http.api));
    out.push(format!(
        "  assignment {:?}; default profile: {}",
        c.assignment,
        c.default_profile
            .as_deref()
            .unwrap_or("none (unassigned machines wait)")
    ));
    for p in &c.profiles {
        let q = p
            .quantity
            .map(|q| format!("quantity {q}"))
            .unwrap_or_else(|| "no limit".into());
        let tags = if p.tags.is_empty() {
            String::new()
        } else {
            format!("  tags {}", p.tags.join(","))
        };
        out.push(format!(
            "  profile    {:<16} {:<12} image {}{tags}",
            p.name, q, p.image
        ));
    }
    out.join("\n")
}

/// `mayu render`: the rendered text exactly as a machine would get it.
pub fn render(config: &Path, machine: &str, template: &str) -> ExitCode {
    match cli::render(config, machine, template) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

/// One machine as a dry run shows it: id and every field the import sets.
fn planned(m: &mayu::machine::Machine) -> String {
    let mut parts = vec![m.id.to_string()];
    let mut add = |k: &str, v: String| {
        if !v.is_empty() {
            parts.push(format!("{k}={v}"));
        }
    };
    add("serial", m.serial.clone().unwrap_or_default());
    add(
        "macs",
        m.macs
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    add("ip", m.ip.map(|i| i.to_string()).unwrap_or_default());
    add("hostname", m.hostname.clone().unwrap_or_default());
    add("profile", m.profile.clone().unwrap_or_default());
    add("state", m.state.to_string());
    add(
        "rack",
        m.rack
            .as_ref()
            .map(|r| match r.unit {
                Some(u) => format!("{}/{u}", r.rack),
                None => r.rack.clone(),
            })
            .unwrap_or_default(),
    );
    add("ipmi", m.ipmi_addr.clone().unwrap_or_default());
    add("provider_id", m.provider_id.clone().unwrap_or_default());
    add("metadata", m.metadata.join(","));
    add("last_boot", m.last_boot().unwrap_or_default());
    mayu::text::escape_control(&parts.join(" ")).into_owned()
}

/// `mayu import-mayu DIR [--dry-run]`: one line per machine imported (or, dry, what each would
/// be) or skipped, then the counts. Fails only when nothing could be imported.
pub fn import(config: &Path, dir: &Path, dry_run: bool) -> ExitCode {
    let report: ImportReport = match cli::import_mayu(config, dir, dry_run) {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    if dry_run {
        for m in &report.planned {
            println!("would import {}", planned(m));
        }
    } else {
        for id in &report.imported {
            println!("imported {id}");
        }
    }
    for (path, why) in &report.skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    println!(
        "{} {}, {} skipped{}",
        report.imported.len(),
        if dry_run {
            "would be imported"
        } else {
            "imported"
        },
        report.skipped.len(),
        if dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    if !report.skipped.is_empty() && report.imported.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
