//! Rendered output per machine and kind, so a machine asking again (every held poll, every
//! reboot) is answered from memory. An entry is good while the machine's revision, the live
//! template set and the machine's asset folder (a newly verified image moves it) are the ones
//! it was rendered with; anything else renders afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Kind, TemplateSet};
use crate::machine::MachineId;

/// Past this many entries the cache starts over (machines retired long ago leave entries).
const MAX_ENTRIES: usize = 65_536;

struct Entry {
    rev: u64,
    set: Arc<TemplateSet>,
    assets: String,
    body: Arc<str>,
}

#[derive(Default)]
pub struct RenderCache {
    entries: Mutex<HashMap<(MachineId, Kind), Entry>>,
}

impl RenderCache {
    pub fn get(
        &self,
        id: &MachineId,
        kind: Kind,
        rev: u64,
        set: &Arc<TemplateSet>,
        assets: &str,
    ) -> Option<Arc<str>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&(id.clone(), kind))
            .filter(|e| e.rev == rev && Arc::ptr_eq(&e.set, set) && e.assets == assets)
            .map(|e| e.body.clone())
    }

    pub fn put(
        &self,
        id: &MachineId,
        kind: Kind,
        rev: u64,
        set: Arc<TemplateSet>,
        assets: String,
        body: Arc<str>,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            (id.clone(), kind),
            Entry {
                rev,
                set,
                assets,
                body,
            },
        );
    }

    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
