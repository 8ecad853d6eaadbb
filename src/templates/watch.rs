//! The hot reloader: a notify watcher on the templates folder, debounced, so an editor's burst
//! of writes and renames (save-by-rename included) becomes one reload.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Templates;
use crate::events::Bus;

/// Quiet time after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Watches the templates folder until cancelled, reloading after each burst of changes.
pub async fn watch(
    templates: Arc<Templates>,
    bus: Bus,
    cancel: CancellationToken,
) -> Result<(), notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !ev.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })?;
    // Watch the folder, not the files: editors replace files by rename, which a watch on the
    // old inode would miss.
    watcher.watch(&templates.config.templates, RecursiveMode::Recursive)?;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            got = rx.recv() => {
                if got.is_none() {
                    return Ok(());
                }
            }
        }
        // Debounce: wait until the folder has been quiet for DEBOUNCE.
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                more = tokio::time::timeout(DEBOUNCE, rx.recv()) => match more {
                    Ok(Some(())) => continue,
                    Ok(None) | Err(_) => break,
                },
            }
        }
        let t = templates.clone();
        let b = bus.clone();
        let _ = tokio::task::spawn_blocking(move || t.reload(&b)).await;
    }
}
