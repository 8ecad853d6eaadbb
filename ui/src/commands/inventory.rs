//! `mayu inventory push|pull`: moving an inventory between this server's folder and the etcd
//! cluster of the `cluster:` section (`mayu::cluster::migrate`). Both are idempotent; a
//! machine that differs on the other side is reported and left alone (exit 1).

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum InventoryCommand {
    /// copy every machine of the local inventory folder into etcd (machines already there
    /// with the same record are left alone; different ones are reported, never overwritten)
    Push,
    /// write etcd's machines into the local inventory folder, each an audit record (same
    /// rules; no mayu may be running on the folder)
    Pull,
}

#[cfg(not(feature = "etcd"))]
pub fn run(_config: &Path, _command: InventoryCommand) -> ExitCode {
    eprintln!("mayu inventory: this mayu was built without etcd support (cargo feature `etcd`)");
    ExitCode::FAILURE
}

#[cfg(feature = "etcd")]
pub fn run(config_path: &Path, command: InventoryCommand) -> ExitCode {
    use mayu::cluster::migrate;

    let (config, runtime) = match super::config_and_runtime(config_path, "mayu inventory") {
        Ok(both) => both,
        Err(code) => return code,
    };
    let (verb, result) = match command {
        InventoryCommand::Push => ("pushed", runtime.block_on(migrate::push(&config))),
        InventoryCommand::Pull => ("pulled", runtime.block_on(migrate::pull(&config))),
    };
    match result {
        Ok(report) => {
            for c in &report.conflicts {
                eprintln!("conflict: {}: {}", c.id, c.reason);
            }
            for u in &report.unreadable {
                eprintln!("unreadable: {u}");
            }
            println!("{}", report.summary(verb));
            if report.conflicts.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("mayu inventory: {e}");
            ExitCode::FAILURE
        }
    }
}
