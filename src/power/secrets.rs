//! The BMC credentials file: a default, per-profile and per-rack entries. It must be mode 0600
//! (or stricter) and owned by whoever runs mayu, or mayu refuses it with the file's name. A
//! password is held as a [`Password`], whose `Debug` and `Display` never show it.
//!
//! ```yaml
//! default: { user: admin, password: "…" }
//! profiles:
//!   control-plane: { user: ops, password: "…" }
//! racks:
//!   r12: { user: root, password: "…", port: 6230 }
//! ```
//!
//! A machine's credentials: its rack's entry, else its profile's, else the default.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::machine::Machine;

/// A BMC password: never printed, never serialised. Any scalar is taken as its text, so a
/// password that looks like a number is not a type error quoting it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Password, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = Password;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a password")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Password, E> {
                Ok(Password(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Password, E> {
                Ok(Password(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Password, E> {
                Ok(Password(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Password, E> {
                Ok(Password(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Password, E> {
                Ok(Password(v.to_string()))
            }
        }
        d.deserialize_any(Scalar)
    }
}

impl Password {
    pub fn new(s: impl Into<String>) -> Password {
        Password(s.into())
    }

    /// The secret itself, for the one place that hands it to ipmitool (its environment).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// One set of credentials.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub user: String,
    pub password: Password,
    /// overrides `power.port` for the BMCs this entry covers.
    #[serde(default)]
    pub port: Option<u16>,
    /// the RMCP+ cipher suite (`ipmitool -C`); 3 (SHA1, AES-128) unless set.
    #[serde(default)]
    pub cipher_suite: Option<u8>,
}

/// Where a machine's credentials came from, for messages (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Rack(String),
    Profile(String),
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Rack(r) => write!(f, "rack {r}"),
            Source::Profile(p) => write!(f, "profile {p}"),
            Source::Default => f.write_str("default"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    #[serde(default)]
    pub default: Option<Credential>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Credential>,
    #[serde(default)]
    pub racks: BTreeMap<String, Credential>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read the BMC secrets file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the BMC secrets file {} is mode {mode:04o}; it holds passwords, so mayu reads it only \
         when no one else can: chmod 600 {}",
        path.display(),
        path.display()
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error(
        "the BMC secrets file {} is owned by uid {owner}, not by mayu's user (uid {me}): chown it",
        path.display()
    )]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error("the BMC secrets file {} is not valid: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error(
        "the BMC secrets file {} is inside the inventory {}, a git repository: move it out",
        path.display(),
        inventory.display()
    )]
    InInventory { path: PathBuf, inventory: PathBuf },
}

impl Secrets {
    /// Reads and checks `path`: a regular file, mode 0600 or stricter, owned by this user.
    /// Parse errors name the file and the place, never a value.
    pub fn load(path: &Path) -> Result<Secrets, SecretsError> {
        let read = |source| SecretsError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretsError::Mode {
                path: path.to_path_buf(),
                mode,
            });
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(SecretsError::Owner {
                path: path.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Secrets::parse(&text).map_err(|reason| SecretsError::Parse {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses the file's text. The reason names the place, never a value (a password with a
    /// stray quote must not land in a log).
    pub fn parse(text: &str) -> Result<Secrets, String> {
        serde_saphyr::from_str::<Secrets>(text).map_err(|e| {
            let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
            e.render_with_options(opts)
        })
    }

    /// The credentials for `m`: its rack's, else its profile's, else the default.
    pub fn for_machine(&self, m: &Machine) -> Option<(&Credential, Source)> {
        if let Some(rack) = &m.rack {
            if let Some(c) = self.racks.get(&rack.rack) {
                return Some((c, Source::Rack(rack.rack.clone())));
            }
        }
        if let Some(p) = &m.profile {
            if let Some(c) = self.profiles.get(p) {
                return Some((c, Source::Profile(p.clone())));
            }
        }
        self.default.as_ref().map(|c| (c, Source::Default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const TEXT: &str = "default: { user: admin, password: d3f }\n\
profiles:\n  cp: { user: ops, password: pr0f }\n\
racks:\n  r1: { user: root, password: r4ck, port: 6230 }\n";

    fn machine(profile: Option<&str>, rack: Option<&str>) -> Machine {
        let mut m = Machine::new(
            "sn-1".parse().unwrap(),
            String::new(),
            time::OffsetDateTime::UNIX_EPOCH,
        );
        m.profile = profile.map(str::to_string);
        m.rack = rack.map(|r| crate::machine::Rack {
            rack: r.into(),
            unit: None,
        });
        m
    }

    #[test]
    fn rack_then_profile_then_default() {
        let s = Secrets::parse(TEXT).unwrap();
        let (c, src) = s.for_machine(&machine(Some("cp"), Some("r1"))).unwrap();
        assert_eq!(
            (c.user.as_str(), c.port, src),
            ("root", Some(6230), Source::Rack("r1".into()))
        );
        let (c, src) = s.for_machine(&machine(Some("cp"), Some("r9"))).unwrap();
        assert_eq!(
            (c.user.as_str(), src),
            ("ops", Source::Profile("cp".into()))
        );
        let (c, src) = s.for_machine(&machine(None, None)).unwrap();
        assert_eq!((c.user.as_str(), src), ("admin", Source::Default));
        assert!(Secrets::default()
            .for_machine(&machine(None, None))
            .is_none());
    }

    #[test]
    fn a_password_never_prints() {
        let s = Secrets::parse(TEXT).unwrap();
        let shown = format!("{s:?}");
        for pw in ["d3f", "pr0f", "r4ck"] {
            assert!(!shown.contains(pw), "{shown}");
        }
    }

    #[test]
    fn a_parse_error_does_not_quote_the_file() {
        let e =
            Secrets::parse("default: { user: admin, password: s3cr3t, extra: 1 }\n").unwrap_err();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn a_readable_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bmc.yaml");
        std::fs::write(&p, TEXT).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Secrets::load(&p).unwrap_err().to_string();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("0644"),
            "{e}"
        );
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Secrets::load(&p).unwrap().default.is_some());
    }
}
