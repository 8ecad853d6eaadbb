//! Files mayu keeps go through its one atomic writer (`mayu::atomic`): here, the inventory's
//! `.gitignore`, written when the audit repository is created. It is whole, has the mode the
//! writer sets whatever the umask, is in the first commit, and no temp file of the writer is
//! left beside it or committed.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::os::unix::fs::PermissionsExt;

use support::Lab;

#[test]
fn a_new_inventory_gets_a_whole_committed_gitignore_and_no_temp_file() {
    // A tight umask, as on hardened hosts: a plain `fs::write` would make the file 0600.
    // The only test in this binary, so no other test sees the process-wide umask.
    // SAFETY: umask(2) only swaps the process's file-creation mask.
    unsafe { libc::umask(0o077) };
    let lab = Lab::new(&[]);
    let engine = lab.engine();
    let inventory = engine.config().inventory.clone();
    engine.flush().unwrap();

    let ignore = inventory.join(".gitignore");
    assert_eq!(
        std::fs::read_to_string(&ignore).unwrap(),
        ".*.tmp.*\n.mayu.lock\n"
    );
    let mode = std::fs::metadata(&ignore).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);

    let repo = git2::Repository::open(&inventory).unwrap();
    let first = {
        let mut walk = repo.revwalk().unwrap();
        walk.push_head().unwrap();
        walk.last().unwrap().unwrap()
    };
    let tree = repo.find_commit(first).unwrap().tree().unwrap();
    let committed = tree.get_name(".gitignore").unwrap();
    let blob = repo.find_blob(committed.id()).unwrap();
    assert_eq!(blob.content(), b".*.tmp.*\n.mayu.lock\n");
    for entry in tree.iter() {
        let name = entry.name().unwrap();
        assert!(!name.contains(".tmp."), "{name} committed");
    }
    for entry in std::fs::read_dir(&inventory).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp."), "{name} left in the inventory");
    }
}
