//! One machine key for every server of a cluster (`<prefix>/machine-key`), so a token any
//! server gave a machine is accepted by all of them. The first server (or `inventory push`)
//! stores its own key; later ones adopt it and keep theirs as the previous key
//! ([`MachineKey::adopt`]), so machines they installed before joining keep working.

use std::path::Path;

use super::store::{ClusterError, Store};
use crate::inventory::machine_key::{self, MachineKey};
use crate::inventory::InventoryError;

/// Makes the cluster's key this inventory folder's (offering the folder's own when the
/// cluster has none). Whether the folder's key changed.
pub async fn join(store: &Store, dir: &Path) -> Result<bool, InventoryError> {
    let io = |source| InventoryError::Io {
        path: dir.to_path_buf(),
        source,
    };
    // A folder without a key gave no machine a token: nothing to keep from it.
    let had_one = dir.join(machine_key::KEY_FILE).exists();
    let own = MachineKey::open(dir).map_err(io)?;
    let stored = store
        .machine_key(&own.to_hex())
        .await
        .map_err(|e| match e {
            ClusterError::Unavailable(why) => InventoryError::Unavailable(why),
            other => InventoryError::Shared(other.to_string()),
        })?;
    let shared = machine_key::parse(stored.trim()).map_err(|why| {
        let key = store.keys().machine_key();
        InventoryError::Shared(format!(
            "etcd key {key}: not a machine key ({why}); put a running server's \
             inventory/.machine-key there (64 hex digits): etcdctl put {key} \"$(cat .machine-key)\""
        ))
    })?;
    MachineKey::adopt(dir, shared, had_one).map_err(io)
}
