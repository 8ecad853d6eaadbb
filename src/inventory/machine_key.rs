//! Per-machine tokens that are never written to a machine file, so never committed to git: a
//! machine's token is HMAC-SHA-256 of its id under a server key kept in `.machine-key` (mode
//! 0600) in the inventory folder, which the audit never commits (it commits only `*.json`).
//! A token from an older inventory (stored in the machine file) is kept only as its SHA-256, so
//! installed machines that baked it in keep working.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

pub const KEY_FILE: &str = ".machine-key";

#[derive(Clone)]
pub struct MachineKey([u8; 32]);

impl std::fmt::Debug for MachineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MachineKey(..)")
    }
}

impl MachineKey {
    /// Reads the inventory's key, creating it (0600) the first time.
    pub fn open(dir: &Path) -> io::Result<MachineKey> {
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(io::Error::other)?;
                let key: [u8; 32] = bytes.try_into().map_err(|_| {
                    io::Error::other(format!("{} is not a 32-byte key", path.display()))
                })?;
                Ok(MachineKey(key))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                use rand::RngCore;
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                crate::atomic::write(&path, hex::encode(key).as_bytes(), 0o600)?;
                Ok(MachineKey(key))
            }
            Err(e) => Err(e),
        }
    }

    /// A key that lives only in memory (a read-only view where no key file exists yet).
    pub fn ephemeral() -> MachineKey {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        MachineKey(key)
    }

    /// The token of machine `id`: HMAC-SHA-256(key, id), hex, 48 characters.
    pub fn token(&self, id: &str) -> String {
        let mut inner_pad = [0x36u8; 64];
        let mut outer_pad = [0x5cu8; 64];
        for (i, b) in self.0.iter().enumerate() {
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
        let k = MachineKey(key);
        assert_eq!(
            k.token("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d273983"
        );
    }
}
