//! A template set: every file in `templates/` parsed together, validated by test-rendering each
//! profile's templates against a fixture machine, and rendered per kind with output checks.

use std::fmt;
use std::path::Path;

use tera::Tera;
use time::OffsetDateTime;

use crate::config::{Config, Profile};
use crate::machine::{Disk, Facts, Mac, Machine, MachineId, Nic};

/// A problem in one template, located where the parser could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for TemplateError {}

/// What a template produces; each kind's output is checked before it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Ipxe,
    Ignition,
    CloudConfig,
    Metadata,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Ipxe,
        Kind::Ignition,
        Kind::CloudConfig,
        Kind::Metadata,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Ipxe => "ipxe",
            Kind::Ignition => "ignition",
            Kind::CloudConfig => "cloud-config",
            Kind::Metadata => "metadata",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The template this profile names for this kind.
    pub fn template_of(self, p: &Profile) -> Option<&str> {
        let t = &p.templates;
        match self {
            Kind::Ipxe => Some(t.ipxe.as_str()),
            Kind::Ignition => t.ignition.as_deref(),
            Kind::CloudConfig => t.cloud_config.as_deref(),
            Kind::Metadata => t.metadata.as_deref(),
        }
    }
}

pub struct TemplateSet {
    tera: Tera,
    pub names: Vec<String>,
    pub loaded_at: OffsetDateTime,
}

/// Editor droppings and hidden files are never templates.
fn is_template_file(name: &str) -> bool {
    !(name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp")
        || name.starts_with('#')
        || name.ends_with(".md"))
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_template_file(&name) {
            continue;
        }
        let rel = format!("{prefix}{name}");
        let ty = entry.file_type()?;
        if ty.is_dir() {
            collect(&entry.path(), &format!("{rel}/"), out)?;
        } else if ty.is_file() {
            // A file that vanished between listing and reading is an editor mid-save; the
            // watcher sees the next event and reloads again.
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                out.push((rel, text));
            }
        }
    }
    Ok(())
}

/// The full text of a Tera error and its causes.
fn chain(e: &tera::Error) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Tera's parser reports ` --> line:col`; find them.
fn parse_position(text: &str) -> Option<(usize, usize)> {
    let at = text.find(" --> ")?;
    let rest = &text[at + 5..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit() && c != ':')
        .unwrap_or(rest.len());
    let (l, c) = rest[..end].split_once(':')?;
    Some((l.parse().ok()?, c.parse().ok()?))
}

/// The parser's expectation (`= expected ...`), or the whole message on one line.
fn condense(text: &str) -> String {
    text.lines()
        .find(|l| l.trim_start().starts_with("= "))
        .map(|l| l.trim_start().trim_start_matches("= ").to_string())
        .unwrap_or_else(|| {
            text.split('\n')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
}

impl TemplateSet {
    /// Parses every template file under `dir`. On failure each broken file is named.
    pub fn load(dir: &Path) -> Result<TemplateSet, Vec<TemplateError>> {
        let mut files = Vec::new();
        collect(dir, "", &mut files).map_err(|e| {
            vec![TemplateError {
                file: dir.display().to_string(),
                line: None,
                column: None,
                message: format!("cannot read templates: {e}"),
            }]
        })?;
        files.sort();
        let mut tera = Tera::default();
        tera.autoescape_on(vec![]);
        if let Err(e) = tera.add_raw_templates(files.clone()) {
            // Find which files fail on their own, so each error names its file.
            let mut errors = Vec::new();
            for (name, text) in &files {
                let mut one = Tera::default();
                if let Err(e) = one.add_raw_template(name, text) {
                    let full = chain(&e);
                    let pos = parse_position(&full);
                    errors.push(TemplateError {
                        file: name.clone(),
                        line: pos.map(|p| p.0),
                        column: pos.map(|p| p.1),
                        message: condense(&full),
                    });
                }
            }
            if errors.is_empty() {
                errors.push(TemplateError {
                    file: dir.display().to_string(),
                    line: None,
                    column: None,
                    message: chain(&e),
                });
            }
            return Err(errors);
        }
        Ok(TemplateSet {
            tera,
            names: files.into_iter().map(|(n, _)| n).collect(),
            loaded_at: OffsetDateTime::now_utc(),
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Renders `name` and checks its output as `kind` requires.
    pub fn render(
        &self,
        name: &str,
        kind: Kind,
        ctx: &tera::Context,
    ) -> Result<String, TemplateError> {
        let err = |message: String| TemplateError {
            file: name.to_string(),
            line: None,
            column: None,
            message,
        };
        let out = self.tera.render(name, ctx).map_err(|e| err(chain(&e)))?;
        finish(kind, out).map_err(err)
    }

    /// Test-renders every template each profile uses against a fixture machine.
    pub fn validate(&self, config: &Config) -> Vec<TemplateError> {
        let mut errors = Vec::new();
        let boot = config.http.boot;
        for p in &config.profiles {
            let m = fixture(p);
            let ctx = match super::context::build(config, boot, Some(p), &m) {
                Ok(ctx) => ctx,
                Err(e) => {
                    errors.push(TemplateError {
                        file: config.file.display().to_string(),
                        line: None,
                        column: None,
                        message: format!("profile `{}`: no template context: {e}", p.name),
                    });
                    continue;
                }
            };
            for kind in Kind::ALL {
                let Some(name) = kind.template_of(p) else {
                    continue;
                };
                if !self.has(name) {
                    errors.push(TemplateError {
                        file: name.to_string(),
                        line: None,
                        column: None,
                        message: format!("profile `{}` names it, but it does not exist", p.name),
                    });
                    continue;
                }
                if let Err(mut e) = self.render(name, kind, &ctx) {
                    e.message = format!("rendering for profile `{}`: {}", p.name, e.message);
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
            }
        }
        errors
    }
}

/// Checks and normalises rendered output: an invalid config is never served.
pub fn finish(kind: Kind, out: String) -> Result<String, String> {
    match kind {
        Kind::Ipxe => {
            if out.trim_start().starts_with("#!ipxe") {
                Ok(out)
            } else {
                Err("an iPXE script must start with `#!ipxe`".into())
            }
        }
        Kind::CloudConfig => {
            if !out.starts_with("#cloud-config") {
                return Err("a cloud-config must start with `#cloud-config`".into());
            }
            serde_saphyr::from_str::<serde_json::Value>(&out)
                .map_err(|e| format!("rendered cloud-config is not valid YAML: {e}"))?;
            Ok(out)
        }
        Kind::Ignition => {
            // Templates may be written as JSON or as YAML (easier to template); both are
            // served as Ignition JSON.
            let value: serde_json::Value = match serde_json::from_str(&out) {
                Ok(v) => v,
                Err(_) => serde_saphyr::from_str(&out)
                    .map_err(|e| format!("rendered Ignition is neither JSON nor YAML: {e}"))?,
            };
            let json = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
            let (_, warnings) = ignition_config::Config::parse_str(&json)
                .map_err(|e| format!("rendered Ignition is invalid: {e}"))?;
            if let Some(w) = warnings.first() {
                return Err(format!("rendered Ignition is invalid: {w}"));
            }
            // Ignition's own rules, which would stop the machine in its initramfs.
            if let Some(v) = super::ignition::validate(&value).first() {
                return Err(format!("rendered Ignition breaks Ignition's rules: {v}"));
            }
            Ok(json)
        }
        Kind::Metadata => Ok(out),
    }
}

/// A plausible machine to test-render templates with.
pub fn fixture(p: &Profile) -> Machine {
    let mac = Mac::from_octets([0x52, 0x54, 0, 0, 0, 1]);
    let mut m = Machine::new(
        MachineId::from_mac(&mac),
        "fixture-token".into(),
        OffsetDateTime::UNIX_EPOCH,
    );
    m.macs.push(mac);
    m.serial = Some("FIXTURE0001".into());
    m.uuid = Some("00000000-0000-4000-8000-000000000001".into());
    m.arch = Some("x86_64".into());
    m.profile = Some(p.name.clone());
    m.facts = Facts {
        cpus: Some(4),
        cpu_model: Some("fixture cpu".into()),
        memory_bytes: Some(8 << 30),
        disks: vec![Disk {
            name: "sda".into(),
            size_bytes: 100 << 30,
            model: None,
        }],
        nics: vec![Nic {
            name: "eth0".into(),
            mac: Some(mac),
            link: true,
        }],
        vendor: Some("Fixture".into()),
        product: Some("Fixture".into()),
    };
    m
}
