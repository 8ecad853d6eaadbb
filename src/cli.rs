//! The one-shot commands of `mayu`: `check`, `render` and `import-mayu`. Each prints for a
//! person and returns the process exit code (0 ok, 1 failure).

use std::net::SocketAddr;
use std::path::Path;

use crate::templates::{self, Kind, TemplateSet};
use crate::{Config, Engine};

/// Validates the config and every template; prints a summary, or every error located.
pub fn check(path: &Path) -> i32 {
    let c = match Config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{errs}");
            return 1;
        }
    };
    // A profile whose image version is missing or unverified, located at its `image:` key.
    let (image_errors, image_warnings) = crate::images::check_profiles(&c);
    if !image_errors.is_empty() {
        eprintln!("{}", crate::config::ConfigErrors(image_errors));
        return 1;
    }
    if let Err(errors) = templates::build(&c) {
        for e in errors {
            eprintln!("{}", c.templates.join(e.to_string()).display());
        }
        return 1;
    }
    use crate::dnsmasq::{CheckError, SelfTestError};
    let mut warnings = image_warnings;
    match crate::dnsmasq::check(&c) {
        Ok(()) => {}
        // A machine without dnsmasq can still check its config; the service will say so too.
        Err(CheckError::SelfTest(e @ SelfTestError::NotFound { .. })) => {
            warnings.push(format!("warning: {e}; the dnsmasq self-test was skipped"))
        }
        Err(e) => {
            eprintln!("{}: {e}", c.templates.join("dnsmasq.conf").display());
            return 1;
        }
    }
    match tftproot_findings(&c) {
        Ok(mut notes) => warnings.append(&mut notes),
        Err(errors) => {
            for e in errors {
                eprintln!("{}: tftproot: {e}", path.display());
            }
            return 1;
        }
    }
    warnings.extend(unreadable_machine_files(&c));
    println!("{}: ok", path.display());
    for w in warnings {
        println!("  {w}");
    }
    let net = &c.network;
    println!(
        "  network    {}/{} on {} (dhcp {:?}{})",
        net.address.value,
        net.prefix,
        net.interface,
        net.dhcp.mode,
        net.ranges()
            .iter()
            .map(|(a, b)| format!(", {a}–{b}"))
            .collect::<String>()
    );
    println!("  boot http  {}   api {}", c.http.boot, c.http.api);
    println!(
        "  assignment {:?}; default profile: {}",
        c.assignment,
        c.default_profile
            .as_deref()
            .unwrap_or("none (unassigned machines wait)")
    );
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
        println!(
            "  profile    {:<16} {:<12} image {}{tags}",
            p.name, q, p.image
        );
    }
    0
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

/// Prints exactly what a machine would be served for a template kind (or a named template).
pub fn render(config_path: &Path, machine: &str, template: &str) -> i32 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{errs}");
            return 1;
        }
    };
    // Read-only: a running mayu holds the inventory, and rendering changes nothing.
    let engine = match Engine::open_read_only(config.clone()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let Some(m) = engine.find(machine) else {
        let close = engine.suggest(machine);
        eprintln!("unknown machine `{machine}`");
        if !close.is_empty() {
            eprintln!("did you mean: {}", close.join(", "));
        }
        return 1;
    };
    let boot: SocketAddr = config.http.boot;
    let rendered = match Kind::parse(template) {
        Some(kind) => match templates::Templates::load(&config) {
            Ok(t) => t.render(boot, &m, kind).map_err(|e| e.to_string()),
            Err(errs) => Err(errs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")),
        },
        None => render_named(&config, boot, &m, template),
    };
    match rendered {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
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
    let ctx = templates::context::build(config, boot, profile, m);
    set.render(name, Kind::Metadata, &ctx)
        .map_err(|e| e.to_string())
}

/// `mayu import-mayu DIR`.
pub fn import_mayu(config_path: &Path, dir: &Path) -> i32 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{errs}");
            return 1;
        }
    };
    let engine = match Engine::open(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let report = match crate::import::import_dir(&engine, dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if let Err(e) = engine.flush() {
        eprintln!("audit: {e}");
        return 1;
    }
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
    i32::from(!report.skipped.is_empty() && report.imported.is_empty())
}
