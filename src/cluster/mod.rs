//! Several boot servers, one inventory: the etcd side of the `cluster:` section
//! (`DESIGN.md` beside this file). [`store`] is the typed wrapper over the etcd v3 client
//! (records, keys, compare-and-swap transactions, the watch, live servers, cluster status);
//! [`key`] shares one machine key among the servers; [`migrate`] copies an inventory folder into etcd and back (`mayu inventory push|pull`).
//! Built only with the cargo feature `etcd`.

pub mod backend;
pub mod key;
pub mod migrate;
pub mod store;

pub use store::{
    ChangeInfo, Check, ClusterError, ClusterStatus, EndpointHealth, EndpointStatus, Key, Keys,
    MachineRecord, Member, Op, Problem, Revision, Seat, ServerInfo, ServerLease, Snapshot, Store,
    Watch, WatchEvent,
};
