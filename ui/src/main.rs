//! `mayu`: the operator console with the boot services in-process; `--headless` runs the
//! services alone; `check`, `render`, `import-mayu`, `images` and `inventory` are one-shot
//! tools.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// A rack booting at once is thousands of small requests a second, each a few short-lived
/// allocations: mimalloc's thread-local free lists cost a fraction of glibc malloc's (perf put
/// malloc/free at 11% of a `/ipxe` request; see BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// print what would be imported, field by field, and write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// print exactly what a machine would be served
    Render {
        /// the machine's id
        #[arg(long, conflicts_with = "mac", required_unless_present = "mac")]
        machine: Option<String>,
        /// or one of its MAC addresses
        #[arg(long)]
        mac: Option<String>,
        /// ipxe, ignition, cloud-config, metadata, or a template file name
        #[arg(long, default_value = "ipxe")]
        template: String,
    },
    /// OS images: fetch and verify vendor releases, list them, remove unused versions
    Images {
        #[command(subcommand)]
        command: commands::images::ImagesCommand,
    },
    /// move the inventory between this server's folder and the etcd cluster (`cluster:`)
    Inventory {
        #[command(subcommand)]
        command: commands::inventory::InventoryCommand,
    },
    /// print shell completions (bash, zsh, fish, elvish, powershell); the Debian package
    /// installs them
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// print the man page, or with --out-dir write one per subcommand (`mayu.1`, `mayu-check.1`, ...)
    #[command(hide = true)]
    Man {
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => commands::check(&cli.config),
        Some(Command::ImportMayu { dir, dry_run }) => commands::import(&cli.config, &dir, dry_run),
        Some(Command::Images { command }) => commands::images::run(&cli.config, command),
        Some(Command::Inventory { command }) => commands::inventory::run(&cli.config, command),
        Some(Command::Render {
            machine,
            mac,
            template,
        }) => commands::render(
            &cli.config,
            machine.or(mac).as_deref().unwrap_or_default(),
            &template,
        ),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "mayu", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Some(Command::Man { out_dir }) => man(out_dir.as_deref()),
        None => run(&cli.config, cli.headless),
    }
}

/// `mayu man`: the pages come from the same clap definition that parses the command line.
fn man(out_dir: Option<&std::path::Path>) -> ExitCode {
    let written = match out_dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mayu: cannot write the man pages: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The console (or, headless, the services alone) until quit or a signal.
fn run(path: &std::path::Path, headless: bool) -> ExitCode {
    let (config, runtime) = match commands::config_and_runtime(path, "mayu") {
        Ok(both) => both,
        Err(code) => return code,
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
