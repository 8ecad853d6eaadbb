//! API bearer tokens: the tokens file (name → SHA-256 of the secret, plus a scope), the first
//! admin token created at first start, and checking a presented secret.
//!
//! The file holds only hashes, so reading it does not reveal a secret. At first start one admin
//! token is created; its plain secret is shown once and also written to `<tokens file>.admin`
//! (mode 0600) so `mayuctl --token-file` can use it and the console can print where it is.
//! Delete that file once the secret is stored elsewhere; the hash in the tokens file keeps working.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// everything, including changes and rendered configs.
    Admin,
    /// reads that reveal no secrets and change nothing.
    Read,
}

impl Scope {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Read => "read",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("tokens file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tokens file {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("token name `{0}` is taken")]
    Duplicate(String),
    #[error("token name `{0}` may only hold letters, digits, `-`, `_` and `.`")]
    BadName(String),
    #[error("no token is named `{0}`")]
    Unknown(String),
    #[error("`{0}` is the last admin token; add another admin token before revoking it")]
    LastAdmin(String),
}

/// One entry of the tokens file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// who the token belongs to; the author of every change made with it.
    pub name: String,
    pub scope: Scope,
    /// hex SHA-256 of the secret.
    pub sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

/// The token created at first start; its secret exists nowhere else but `secret_file`.
#[derive(Clone)]
pub struct CreatedToken {
    pub name: String,
    pub secret: String,
    /// the tokens file (hashes).
    pub tokens_file: PathBuf,
    /// `<tokens file>.admin`: the plain secret, mode 0600.
    pub secret_file: PathBuf,
}

// Written by hand so a `{:?}` in a log line never prints the secret.
impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("tokens_file", &self.tokens_file)
            .field("secret_file", &self.secret_file)
            .finish()
    }
}

/// Who presented a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

/// The loaded tokens; cheap to clone, all clones share one table.
#[derive(Debug, Clone)]
pub struct Tokens {
    path: Option<PathBuf>,
    entries: Arc<RwLock<Vec<TokenEntry>>>,
}

/// Where the first admin secret is written beside the tokens file.
pub fn admin_secret_path(tokens_file: &Path) -> PathBuf {
    let mut name = tokens_file.as_os_str().to_owned();
    name.push(".admin");
    PathBuf::from(name)
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("mayu_{}", hex::encode(b))
}

/// Compares without an early exit, so timing says nothing about how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Writes `bytes` to `path` with mode 0600 via a temp file and rename, so a crash never leaves
/// a half-written tokens file and the secret is never readable by others, even briefly.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TokenError> {
    let io = |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    crate::atomic::write(path, bytes, 0o600).map_err(io)
}

impl Tokens {
    /// A table kept only in memory (tests, embedding); `add` does not persist.
    pub fn in_memory(entries: Vec<TokenEntry>) -> Tokens {
        Tokens {
            path: None,
            entries: Arc::new(RwLock::new(entries)),
        }
    }

    /// Loads the tokens file, creating it with one admin token when it does not exist or
    /// holds no token. The created secret is returned once and written to
    /// [`admin_secret_path`].
    pub fn load_or_create(path: &Path) -> Result<(Tokens, Option<CreatedToken>), TokenError> {
        let file = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice::<TokensFile>(&bytes).map_err(|e| TokenError::Invalid {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokensFile::default(),
            Err(source) => {
                return Err(TokenError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        for t in &file.tokens {
            if !valid_name(&t.name) {
                return Err(TokenError::Invalid {
                    path: path.to_path_buf(),
                    reason: format!("token name `{}` is not allowed", t.name),
                });
            }
            if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(TokenError::Invalid {
                    path: path.to_path_buf(),
                    reason: format!("token `{}` has no valid sha256", t.name),
                });
            }
        }
        let tokens = Tokens {
            path: Some(path.to_path_buf()),
            entries: Arc::new(RwLock::new(file.tokens)),
        };
        if !tokens.read().is_empty() {
            return Ok((tokens, None));
        }
        let secret = tokens.add("admin", Scope::Admin)?;
        let secret_file = admin_secret_path(path);
        write_private(&secret_file, format!("{secret}\n").as_bytes())?;
        Ok((
            tokens,
            Some(CreatedToken {
                name: "admin".into(),
                secret,
                tokens_file: path.to_path_buf(),
                secret_file,
            }),
        ))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<TokenEntry>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a token and returns its secret (shown only now). Persists the file if there is one.
    pub fn add(&self, name: &str, scope: Scope) -> Result<String, TokenError> {
        if !valid_name(name) {
            return Err(TokenError::BadName(name.to_string()));
        }
        let secret = new_secret();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.iter().any(|e| e.name == name) {
            return Err(TokenError::Duplicate(name.to_string()));
        }
        let mut next = entries.clone();
        next.push(TokenEntry {
            name: name.to_string(),
            scope,
            sha256: hash(&secret),
        });
        self.persist(&next)?;
        *entries = next;
        Ok(secret)
    }

    /// Revokes a token. The last admin token cannot go: without it nobody could change
    /// anything, including adding a new one.
    pub fn remove(&self, name: &str) -> Result<(), TokenError> {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let Some(pos) = entries.iter().position(|e| e.name == name) else {
            return Err(TokenError::Unknown(name.to_string()));
        };
        let admins = entries.iter().filter(|e| e.scope == Scope::Admin).count();
        if entries[pos].scope == Scope::Admin && admins == 1 {
            return Err(TokenError::LastAdmin(name.to_string()));
        }
        let mut next = entries.clone();
        next.remove(pos);
        self.persist(&next)?;
        *entries = next;
        Ok(())
    }

    fn persist(&self, entries: &[TokenEntry]) -> Result<(), TokenError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let body = serde_json::to_vec_pretty(&TokensFile {
            tokens: entries.to_vec(),
        })
        .map_err(|e| TokenError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_private(path, &body)
    }

    /// The caller a secret belongs to, if any.
    pub fn authenticate(&self, secret: &str) -> Option<Caller> {
        let h = hash(secret.trim());
        self.read()
            .iter()
            .find(|e| same(e.sha256.as_bytes(), h.as_bytes()))
            .map(|e| Caller {
                name: e.name.clone(),
                scope: e.scope,
            })
    }

    /// Token names and scopes (never hashes).
    pub fn names(&self) -> Vec<(String, Scope)> {
        self.read()
            .iter()
            .map(|e| (e.name.clone(), e.scope))
            .collect()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test should stop at the first surprise
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_start_creates_one_private_admin_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let (tokens, created) = Tokens::load_or_create(&path).unwrap();
        let created = created.unwrap();
        assert_eq!(created.name, "admin");
        for p in [&path, &created.secret_file] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!stored.contains(&created.secret), "secret stored in clear");
        let on_disk = std::fs::read_to_string(&created.secret_file).unwrap();
        assert_eq!(on_disk.trim(), created.secret);
        assert_eq!(
            tokens.authenticate(&created.secret),
            Some(Caller {
                name: "admin".into(),
                scope: Scope::Admin
            })
        );
        assert_eq!(tokens.authenticate("mayu_wrong"), None);

        let (again, none) = Tokens::load_or_create(&path).unwrap();
        assert!(none.is_none());
        assert!(again.authenticate(&created.secret).is_some());
        let viewer = again.add("viewer", Scope::Read).unwrap();
        let (third, _) = Tokens::load_or_create(&path).unwrap();
        assert_eq!(
            third.authenticate(&viewer).map(|c| c.scope),
            Some(Scope::Read)
        );
        assert!(matches!(
            third.add("viewer", Scope::Read),
            Err(TokenError::Duplicate(_))
        ));
        assert!(matches!(
            third.remove("admin"),
            Err(TokenError::LastAdmin(_))
        ));
        third.remove("viewer").unwrap();
        let (fourth, _) = Tokens::load_or_create(&path).unwrap();
        assert_eq!(fourth.authenticate(&viewer), None);
        assert!(matches!(
            fourth.remove("viewer"),
            Err(TokenError::Unknown(_))
        ));
    }

    #[test]
    fn broken_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = Tokens::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("tokens.json"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
    }
}
