//! Per-machine tokens that are never written to a machine file, so never committed to git: a
//! machine's token is HMAC-SHA-256 of its id under a server key kept in `.machine-key` (mode
//! 0600) in the inventory folder, which the audit never commits (it commits only `*.json`).
//! A token from an older inventory (stored in the machine file) is kept only as its SHA-256, so
//! installed machines that baked it in keep working.
//!
//! Servers sharing an etcd inventory share one key (`cluster` stores it): a server that had
//! its own before joining keeps it as `.machine-key.previous`, whose tokens stay valid.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

pub const KEY_FILE: &str = ".machine-key";
/// The key this inventory had before it adopted a cluster's.
pub const PREVIOUS_FILE: &str = ".machine-key.previous";

#[derive(Clone)]
pub struct MachineKey {
    key: [u8; 32],
    previous: Option<[u8; 32]>,
}

/// The key an engine derives tokens with now: replaced when a server joins its cluster's key
/// after it started.
#[derive(Clone, Debug)]
pub struct CurrentKey(std::sync::Arc<std::sync::RwLock<MachineKey>>);

impl CurrentKey {
    pub fn new(key: MachineKey) -> CurrentKey {
        CurrentKey(std::sync::Arc::new(std::sync::RwLock::new(key)))
    }

    /// A copy of the key now (no lock is held after this returns).
    pub fn get(&self) -> MachineKey {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, key: MachineKey) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = key;
    }
}

impl std::fmt::Debug for MachineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MachineKey(..)")
    }
}

/// A key file's 32 bytes; `None` when there is no such file.
fn read(path: &Path) -> io::Result<Option<[u8; 32]>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(text.trim())
            .map(Some)
            .map_err(|why| io::Error::other(format!("{}: {why}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A key as hex (a key file's or the cluster's).
pub fn parse(hex_text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_text).map_err(|e| e.to_string())?;
    bytes
        .try_into()
        .map_err(|_| "not a 32-byte key".to_string())
}

fn random() -> [u8; 32] {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

impl MachineKey {
    /// Reads the inventory's key, creating it (0600) the first time.
    pub fn open(dir: &Path) -> io::Result<MachineKey> {
        let path = dir.join(KEY_FILE);
        let key = match read(&path)? {
            Some(key) => key,
            None => {
                let key = random();
                crate::atomic::write(&path, hex::encode(key).as_bytes(), 0o600)?;
                key
            }
        };
        Ok(MachineKey {
            key,
            previous: read(&dir.join(PREVIOUS_FILE))?,
        })
    }

    /// A key that lives only in memory (a read-only view where no key file exists yet).
    pub fn ephemeral() -> MachineKey {
        MachineKey {
            key: random(),
            previous: None,
        }
    }

    /// The key as hex, as a cluster stores it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.key)
    }

    /// Makes `shared` this inventory's key; the one it replaces becomes the previous key
    /// when `keep` (and none is kept already: the first key's tokens are the ones installed
    /// machines may have baked in). Whether anything changed.
    pub fn adopt(dir: &Path, shared: [u8; 32], keep: bool) -> io::Result<bool> {
        let own = MachineKey::open(dir)?;
        if own.key == shared {
            return Ok(false);
        }
        if keep && own.previous.is_none() {
            crate::atomic::write(
                &dir.join(PREVIOUS_FILE),
                hex::encode(own.key).as_bytes(),
                0o600,
            )?;
        }
        crate::atomic::write(&dir.join(KEY_FILE), hex::encode(shared).as_bytes(), 0o600)?;
        Ok(true)
    }

    /// The token of machine `id`: HMAC-SHA-256(key, id), hex, 48 characters.
    pub fn token(&self, id: &str) -> String {
        hmac(&self.key, id)
    }

    /// Whether `presented` is the token the previous key gave machine `id`, in time that does
    /// not depend on where they differ.
    pub fn previous_accepts(&self, id: &str, presented: &str) -> bool {
        self.previous.is_some_and(|p| {
            let t = hmac(&p, id);
            t.len() == presented.len()
                && t.bytes()
                    .zip(presented.bytes())
                    .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                    == 0
        })
    }
}

fn hmac(key: &[u8; 32], id: &str) -> String {
    let mut inner_pad = [0x36u8; 64];
    let mut outer_pad = [0x5cu8; 64];
    for (i, b) in key.iter().enumerate() {
        inner_pad[i] ^= b;
        outer_pad[i] ^= b;
    }
    let inner = Sha256::new()
        .chain_update(inner_pad)
        .chain_update(id.as_bytes())
        .finalize();
    let mac = Sha256::new()
        .chain_update(outer_pad)
        .chain_update(inner)
        .finalize();
    hex::encode(&mac[..24])
}

/// SHA-256 of a legacy token, hex.
pub fn legacy_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_per_key_and_id_and_the_key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let a = MachineKey::open(dir.path()).expect("create");
        let b = MachineKey::open(dir.path()).expect("read");
        assert_eq!(a.token("sn-1"), b.token("sn-1"));
        assert_ne!(a.token("sn-1"), a.token("sn-2"));
        assert_ne!(a.token("sn-1"), MachineKey::ephemeral().token("sn-1"));
        assert_eq!(a.token("sn-1").len(), 48);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2_prefix() {
        // RFC 4231 test case 2 uses a 4-byte key; with our fixed 32-byte key type the
        // construction is checked against a key padded with zeros, which HMAC treats the same.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let k = MachineKey {
            key,
            previous: None,
        };
        assert_eq!(
            k.token("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d273983"
        );
    }

    #[test]
    fn an_adopted_key_keeps_the_first_one_as_previous() {
        let dir = tempfile::tempdir().expect("tmp");
        let own = MachineKey::open(dir.path()).expect("create");
        let first = own.token("sn-1");
        let shared = random();
        assert!(MachineKey::adopt(dir.path(), shared, true).expect("adopt"));
        assert!(!MachineKey::adopt(dir.path(), shared, true).expect("again"));
        let now = MachineKey::open(dir.path()).expect("read");
        assert_eq!(now.to_hex(), hex::encode(shared));
        assert_ne!(now.token("sn-1"), first);
        assert!(now.previous_accepts("sn-1", &first));
        assert!(!now.previous_accepts("sn-2", &first));
        assert!(!now.previous_accepts("sn-1", &now.token("sn-1")));
        // A second cluster key later: the first key stays the previous one.
        assert!(MachineKey::adopt(dir.path(), random(), true).expect("adopt"));
        let later = MachineKey::open(dir.path()).expect("read");
        assert!(later.previous_accepts("sn-1", &first));
    }
}
