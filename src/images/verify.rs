//! Detached OpenPGP signatures, checked by Debian's `gpgv` (the verifier apt uses) against a
//! keyring holding only the keys we trust, with the signer read from its machine-readable status.

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Flatcar's image-signing key (see `keys/README.md` for where it was found).
pub const FLATCAR_KEY: &str = include_str!("../../keys/flatcar-image-signing.asc");
pub const FLATCAR_FINGERPRINT: &str = "F88CFEDEFF29A5B4D9523864E25D9AED0593B34A";
/// Fedora's release keys; Fedora CoreOS signs each build with its Fedora release's key.
pub const FEDORA_KEYS: &str = include_str!("../../keys/fedora.asc");
pub const FEDORA_FINGERPRINTS: &[&str] = &[
    "C6E7F081CF80E13146676E88829B606631645531",
    "36F612DCF27F7D1A48A835E4DBFCF71C6D9F90A6",
    "4F50A6114CD5C6976A7F1179655A4B02F577861E",
    "D924B10D3E810DABDD8B56B596E7E91491211FCE",
    "B2E766FA50CA6FA2D5ED06FC09D879E09488FB64",
];

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot run gpgv (Debian package `gpgv`): {0}")]
    NoGpgv(std::io::Error),
    #[error("bad signature: the file is not what the key signed")]
    Bad,
    #[error("signed by key {0}, which is not in the trusted keyring")]
    UnknownKey(String),
    #[error("signed by key {0}, which is revoked")]
    Revoked(String),
    #[error("signed by {got}, which is not a trusted key ({want})")]
    Untrusted { got: String, want: String },
    #[error("not a valid signature: {0}")]
    Malformed(String),
    #[error("key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The keys a verification accepts: a binary keyring for gpgv, and which primary fingerprints
/// may sign (`None`: any key in the ring, for a key file the operator named).
#[derive(Debug, Clone)]
pub struct Keyring {
    binary: Vec<u8>,
    trusted: Option<Vec<String>>,
}

impl Keyring {
    pub fn flatcar() -> Result<Keyring, VerifyError> {
        Ok(Keyring {
            binary: dearmor(FLATCAR_KEY).map_err(|reason| VerifyError::Key {
                path: "keys/flatcar-image-signing.asc".into(),
                reason,
            })?,
            trusted: Some(vec![FLATCAR_FINGERPRINT.into()]),
        })
    }

    pub fn fedora() -> Result<Keyring, VerifyError> {
        Ok(Keyring {
            binary: dearmor(FEDORA_KEYS).map_err(|reason| VerifyError::Key {
                path: "keys/fedora.asc".into(),
                reason,
            })?,
            trusted: Some(FEDORA_FINGERPRINTS.iter().map(|s| s.to_string()).collect()),
        })
    }

    /// A key file, armored (`-----BEGIN PGP PUBLIC KEY BLOCK-----`) or binary.
    pub fn from_file(path: &Path) -> Result<Keyring, VerifyError> {
        let bytes = std::fs::read(path).map_err(|source| VerifyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let binary = match std::str::from_utf8(&bytes) {
            Ok(text) if text.contains("-----BEGIN PGP") => {
                dearmor(text).map_err(|reason| VerifyError::Key {
                    path: path.to_path_buf(),
                    reason,
                })?
            }
            _ => bytes,
        };
        if binary.is_empty() {
            return Err(VerifyError::Key {
                path: path.to_path_buf(),
                reason: "holds no key".into(),
            });
        }
        Ok(Keyring {
            binary,
            trusted: None,
        })
    }
}

/// The binary packets of every armored block in `text` (gpgv 2.2 reads no armored keyrings).
pub fn dearmor(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim_end);
    let mut blocks = 0;
    while let Some(line) = lines.next() {
        if !line.starts_with("-----BEGIN PGP") {
            continue;
        }
        blocks += 1;
        // Armor headers (`Comment: ...`) run up to the first blank line.
        let mut body = String::new();
        let mut in_headers = true;
        let mut ended = false;
        for l in lines.by_ref() {
            if l.starts_with("-----END PGP") {
                ended = true;
                break;
            }
            if in_headers {
                if l.is_empty() {
                    in_headers = false;
                } else if !l.contains(':') {
                    // No headers at all: this is already base64.
                    in_headers = false;
                    body.push_str(l.trim());
                }
                continue;
            }
            if l.starts_with('=') {
                continue; // the CRC-24 line
            }
            body.push_str(l.trim());
        }
        if !ended {
            return Err("an armored block has no END line".into());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("armored block {blocks} is not base64: {e}"))?;
        out.extend(bytes);
    }
    if blocks == 0 {
        return Err("no armored OpenPGP block".into());
    }
    Ok(out)
}

/// Fails early, before anything is downloaded, when gpgv cannot run.
pub async fn gpgv_available() -> Result<(), VerifyError> {
    tokio::process::Command::new("gpgv")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map(|_| ())
        .map_err(VerifyError::NoGpgv)
}

/// Checks `sig` (a detached signature) over `data`; returns the signer's primary fingerprint.
/// `scratch` is a private folder for gpgv's keyring and home (left as it was).
pub async fn verify_detached(
    ring: &Keyring,
    sig: &Path,
    data: &Path,
    scratch: &Path,
) -> Result<String, VerifyError> {
    let keyring = scratch.join(".trusted.gpg");
    std::fs::write(&keyring, &ring.binary).map_err(|source| VerifyError::Io {
        path: keyring.clone(),
        source,
    })?;
    let out = tokio::process::Command::new("gpgv")
        .arg("--homedir")
        .arg(scratch)
        .arg("--status-fd")
        .arg("1")
        .arg("--keyring")
        .arg(&keyring)
        .arg(sig)
        .arg(data)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let _ = std::fs::remove_file(&keyring);
    let out = out.map_err(VerifyError::NoGpgv)?;
    let status = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let signer = judge(&status, out.status.success(), &stderr)?;
    match &ring.trusted {
        Some(trusted) if !trusted.iter().any(|t| t.eq_ignore_ascii_case(&signer)) => {
            Err(VerifyError::Untrusted {
                got: signer,
                want: trusted.join(", "),
            })
        }
        _ => Ok(signer),
    }
}

/// Reads gpgv's `--status-fd` lines. A good signature has VALIDSIG (whose last field is the
/// primary key's fingerprint) and GOODSIG, or EXPKEYSIG: a subkey that has expired since it
/// signed (older releases) still made a good signature. Anything bad wins.
fn judge(status: &str, exit_ok: bool, stderr: &str) -> Result<String, VerifyError> {
    let mut good = false;
    let mut primary = None;
    let mut missing = None;
    for line in status.lines() {
        let mut f = line.split_whitespace();
        if f.next() != Some("[GNUPG:]") {
            continue;
        }
        let tag = f.next().unwrap_or_default();
        let rest: Vec<&str> = f.collect();
        match tag {
            "BADSIG" => return Err(VerifyError::Bad),
            "REVKEYSIG" => {
                return Err(VerifyError::Revoked(
                    rest.first().copied().unwrap_or("?").into(),
                ))
            }
            "GOODSIG" | "EXPKEYSIG" => good = true,
            "VALIDSIG" => primary = rest.last().map(|s| s.to_string()),
            "NO_PUBKEY" | "ERRSIG" => {
                missing = missing.or_else(|| rest.first().map(|s| s.to_string()))
            }
            _ => {}
        }
    }
    match (good, primary) {
        (true, Some(p)) => Ok(p),
        _ => match missing {
            Some(k) if status.contains("NO_PUBKEY") => Err(VerifyError::UnknownKey(k)),
            _ => {
                let why = stderr
                    .lines()
                    .map(|l| l.trim_start_matches("gpgv: ").trim())
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                Err(VerifyError::Malformed(if why.is_empty() {
                    format!("gpgv found no good signature (exit ok: {exit_ok})")
                } else {
                    why
                }))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_keys_dearmor() {
        let flatcar = dearmor(FLATCAR_KEY).unwrap_or_default();
        // An OpenPGP public-key packet (old or new format tag 6) starts the ring.
        assert!(matches!(flatcar.first(), Some(0x98 | 0x99 | 0xc6)));
        let fedora = dearmor(FEDORA_KEYS).unwrap_or_default();
        assert!(fedora.len() > 5 * 1000, "{}", fedora.len());
    }

    #[test]
    fn status_lines() {
        let ok = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG C787E916CC6E9639 test\n[GNUPG:] VALIDSIG 2376 2026-12-01 1796168400 0 4 0 22 8 00 PRIMARYFPR\n";
        assert_eq!(judge(ok, true, "").ok().as_deref(), Some("PRIMARYFPR"));
        let bad = "[GNUPG:] BADSIG C787E916CC6E9639 test\n";
        assert!(matches!(judge(bad, false, ""), Err(VerifyError::Bad)));
        let unknown = "[GNUPG:] ERRSIG C787E916CC6E9639 22 8 00 1 9 FPR\n[GNUPG:] NO_PUBKEY C787E916CC6E9639\n";
        assert!(
            matches!(judge(unknown, false, ""), Err(VerifyError::UnknownKey(k)) if k == "C787E916CC6E9639")
        );
        assert!(matches!(
            judge("", false, "gpgv: no valid OpenPGP data found."),
            Err(VerifyError::Malformed(m)) if m.contains("no valid OpenPGP data")
        ));
    }
}
