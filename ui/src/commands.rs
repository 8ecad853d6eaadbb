//! The one-shot commands of `mayu` (`check`, `render`, `import-mayu`; `images` in [`images`])
//! as the operator sees them: what [`mayu::cli`] found, printed, and the exit code (0 ok,
//! 1 failure).

pub mod images;

use std::path::Path;
use std::process::ExitCode;

use mayu::cli::{self, CheckReport, CommandError};
use mayu::import::ImportReport;

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

/// `mayu import-mayu DIR`: one line per machine imported or skipped, then the counts. Fails
/// only when nothing could be imported.
pub fn import(config: &Path, dir: &Path) -> ExitCode {
    let report: ImportReport = match cli::import_mayu(config, dir) {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    for id in &report.imported {
        println!("imported {id}");
    }
    for (path, why) in &report.skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    println!(
        "{} imported, {} skipped",
        report.imported.len(),
        report.skipped.len()
    );
    if !report.skipped.is_empty() && report.imported.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
