//! `mayu`: the operator console with the boot services in-process; `--headless` runs the
//! services alone; `check`, `render` and `import-mayu` are one-shot tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mayu",
    version,
    about = "Bare-metal network provisioning console"
)]
struct Cli {
    /// the configuration file
    #[arg(long, global = true, default_value = "config.yaml")]
    config: PathBuf,
    /// run the boot services without the console, logging to stdout and the log file
    #[arg(long)]
    headless: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// validate the configuration and templates; exit 1 with file:line:col on any error
    Check,
    /// import a giantswarm/mayu cluster folder (cluster.json + <serial>/conf.json)
    ImportMayu {
        /// the Mayu cluster folder
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(&cli.config),
        Some(Command::ImportMayu { dir }) => import(&cli.config, &dir),
        None => run(&cli.config, cli.headless),
    }
}

/// The console (or, headless, the services alone) until quit or a signal.
fn run(path: &std::path::Path, headless: bool) -> ExitCode {
    // Config errors print before the terminal is taken, where the operator can read them.
    let config = match mayu::Config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{errs}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mayu: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if headless {
        runtime.block_on(mayu_console::run::headless(config))
    } else {
        runtime.block_on(mayu_console::run::console(config))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mayu: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match mayu::Config::load(path) {
        Ok(c) => {
            println!("{}: ok", path.display());
            println!(
                "  network   {} on {} (dhcp {:?})",
                c.network.address.value, c.network.interface, c.network.dhcp.mode
            );
            println!("  boot http {}   api {}", c.http.boot, c.http.api);
            println!(
                "  assignment {:?}, default profile {}",
                c.assignment,
                c.default_profile
                    .as_deref()
                    .unwrap_or("(none: machines wait)")
            );
            for p in &c.profiles {
                let q = p
                    .quantity
                    .map(|q| q.to_string())
                    .unwrap_or_else(|| "no limit".into());
                println!(
                    "  profile {:<16} quantity {:<9} image {}",
                    p.name, q, p.image
                );
            }
            ExitCode::SUCCESS
        }
        Err(errs) => {
            eprintln!("{errs}");
            ExitCode::FAILURE
        }
    }
}

fn import(config: &std::path::Path, dir: &std::path::Path) -> ExitCode {
    let _ = (config, dir);
    eprintln!("not yet");
    ExitCode::FAILURE
}
