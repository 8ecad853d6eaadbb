//! The engine's durable half. A change is decided in memory, under the index lock, and queued
//! here with a ticket; one writer thread takes everything queued as a group, makes it durable
//! through the backend (files, one folder sync, one journal sync) and answers every ticket.
//! Readers never wait on a disk.
//!
//! A group that fails is put back: each machine in it is re-read from its file (the last
//! durable state, whole by construction), later queued changes to those machines fail too
//! (they were decided on top of the failed one), and every ticket learns the error.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::Notify;

use super::{EngineError, Index};
use crate::events::{Bus, EventKind};
use crate::inventory::machine_key::CurrentKey;
use crate::inventory::{Backend, InventoryError, Write};
use crate::machine::{Machine, MachineId};

/// Where a queued change stands: answered once its group is durable (or failed).
#[derive(Default)]
struct Slot {
    outcome: Mutex<Option<Result<(), InventoryError>>>,
    ready: Condvar,
    notify: Notify,
}

impl Slot {
    fn answer(&self, r: Result<(), InventoryError>) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        self.ready.notify_all();
        // One waiter at most; a stored permit wakes it even if it has not started waiting.
        self.notify.notify_one();
    }

    fn take(&self) -> Option<Result<(), InventoryError>> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// A queued change's receipt: wait on it (blocking or async) to learn it is durable.
pub struct Ticket(Arc<Slot>);

impl Ticket {
    /// Blocks until the change is durable. Not on an async worker: use [`Ticket::durable`].
    pub fn wait(self) -> Result<(), EngineError> {
        let mut outcome = self.0.outcome.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = outcome.take() {
                return r.map_err(EngineError::from);
            }
            outcome = self
                .0
                .ready
                .wait(outcome)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    pub async fn durable(self) -> Result<(), EngineError> {
        loop {
            if let Some(r) = self.0.take() {
                return r.map_err(EngineError::from);
            }
            self.0.notify.notified().await;
        }
    }
}

struct Queued {
    write: Write,
    slot: Arc<Slot>,
}

#[derive(Default)]
struct Queue {
    items: Vec<Queued>,
    stop: bool,
}

/// What the writer needs to put a failed change back.
pub(super) struct Shared {
    pub backend: Arc<dyn Backend>,
    pub index: Arc<Mutex<Index>>,
    pub bus: Bus,
    pub key: CurrentKey,
}

struct State {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// The queue and its writer thread; dropping it writes what is queued, then stops the thread.
pub(super) struct Writer {
    state: Arc<State>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(shared: Shared) -> std::io::Result<Writer> {
        let state = Arc::new(State {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let for_thread = state.clone();
        let thread = std::thread::Builder::new()
            .name("inventory-writer".into())
            .spawn(move || run(&for_thread, &shared))?;
        Ok(Writer {
            state,
            thread: Some(thread),
        })
    }

    /// Queues one change. Call it with the index lock held, so the queue's order is the
    /// order the changes were decided in.
    pub fn enqueue(&self, write: Write) -> Ticket {
        let slot = Arc::new(Slot::default());
        let mut q = self.state.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.items.push(Queued {
            write,
            slot: slot.clone(),
        });
        self.state.wake.notify_one();
        Ticket(slot)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.state
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop = true;
        self.state.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(state: &State, shared: &Shared) {
    loop {
        let group = {
            let mut q = state.queue.lock().unwrap_or_else(|p| p.into_inner());
            while q.items.is_empty() && !q.stop {
                q = state.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.items.is_empty() {
                return;
            }
            std::mem::take(&mut q.items)
        };
        let writes: Vec<Write> = group.iter().map(|g| g.write.clone()).collect();
        let results = shared.backend.write_each(&writes);
        let mut failed: Vec<(Queued, InventoryError)> = Vec::new();
        {
            let mut idx = shared.index.lock().unwrap_or_else(|p| p.into_inner());
            for (g, r) in group.into_iter().zip(results) {
                match r {
                    Ok(rev) => {
                        // What the next change of this machine is decided on (a later
                        // revision from the watch stays).
                        if rev > 0 {
                            let base = idx.base.entry(g.write.id.clone()).or_insert(0);
                            *base = (*base).max(rev);
                        }
                        g.slot.answer(Ok(()));
                    }
                    Err(e) => failed.push((g, e)),
                }
            }
        }
        if !failed.is_empty() {
            put_back(state, shared, failed);
        }
    }
}

/// Changes failed: their machines go back to what the backend holds, and every change decided
/// on top of them (still queued) fails with the same error.
fn put_back(state: &State, shared: &Shared, failed: Vec<(Queued, InventoryError)>) {
    let mut group: Vec<(Queued, InventoryError)> = failed;
    tracing::error!(error = %group[0].1, changes = group.len(), "inventory write failed; changes put back");
    let ids: HashSet<MachineId> = group.iter().map(|(g, _)| g.write.id.clone()).collect();
    // What the backend holds, read without the index held: a shared backend's reads run on
    // the runtime whose watch may be waiting for the index (holding it here deadlocked).
    let before: HashMap<MachineId, Option<u64>> = {
        let idx = shared.index.lock().unwrap_or_else(|p| p.into_inner());
        ids.iter()
            .map(|id| (id.clone(), idx.base.get(id).copied()))
            .collect()
    };
    let reads: Vec<(MachineId, Result<Option<Machine>, InventoryError>, u64)> = ids
        .iter()
        .map(|id| {
            let read = shared.backend.read_machine(id);
            (id.clone(), read, shared.backend.revision_of(id))
        })
        .collect();
    let mut idx = shared.index.lock().unwrap_or_else(|p| p.into_inner());
    {
        let mut q = state.queue.lock().unwrap_or_else(|p| p.into_inner());
        let (tainted, keep): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut q.items)
            .into_iter()
            .partition(|g| ids.contains(&g.write.id));
        q.items = keep;
        for t in tainted {
            let e = group
                .iter()
                .find(|(g, _)| g.write.id == t.write.id)
                .map(|(_, e)| e.duplicate())
                .unwrap_or(InventoryError::Conflict(
                    "decided on a change that failed".into(),
                ));
            group.push((t, e));
        }
    }
    for (id, read, rev) in reads {
        if idx.base.get(&id).copied() != before.get(&id).copied().flatten() {
            // The watch brought a later record meanwhile: it stays.
            continue;
        }
        let reason = group
            .iter()
            .find(|(g, _)| g.write.id == id)
            .map(|(_, e)| format!("not saved: {e}"))
            .unwrap_or_default();
        match read {
            Ok(Some(mut m)) => {
                super::adopt_token(&shared.key.get(), &mut m);
                idx.put(m.clone());
                if rev > 0 {
                    idx.base.insert(id.clone(), rev);
                }
                shared.bus.publish(EventKind::MachineChanged {
                    machine: Box::new(m.redacted()),
                    change: reason.clone(),
                    actor: "mayu".into(),
                });
            }
            Ok(None) => {
                idx.base.remove(&id);
                if idx.take(&id).is_some() {
                    shared.bus.publish(EventKind::MachineRetired {
                        id: id.clone(),
                        actor: "mayu".into(),
                    });
                }
            }
            Err(read) => {
                // Neither the change nor the old record can be trusted: keep its place as an
                // unreadable file does.
                tracing::error!(id = %id, error = %read, "cannot re-read a machine after a failed write");
            }
        }
    }
    drop(idx);
    for (g, e) in group {
        g.slot.answer(Err(e));
    }
}
