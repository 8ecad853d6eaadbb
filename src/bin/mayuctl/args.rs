//! `mayuctl`'s command line: the global options and one subcommand per operator task.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "mayuctl",
    version,
    about = "Operate a mayu boot server through its API",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage."
)]
pub struct Cli {
    /// API address of the mayu server.
    #[arg(
        long,
        env = "MAYU_SERVER",
        default_value = "http://127.0.0.1:4080",
        global = true
    )]
    pub server: String,
    /// API bearer token.
    #[arg(long, env = "MAYU_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the API token (e.g. the `tokens.json.admin` written at first start).
    #[arg(long, env = "MAYU_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM certificate to trust for an https server (e.g. its self-signed certificate).
    #[arg(long, env = "MAYU_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Mayu's mayuctl: the server's host name (with --port and --no-tls; instead of --server).
    #[arg(long, global = true, hide = true, conflicts_with = "server")]
    pub host: Option<String>,
    /// Mayu's mayuctl: the server's API port (default 4080).
    #[arg(long, global = true, hide = true, conflicts_with = "server")]
    pub port: Option<u16>,
    /// Mayu's mayuctl: plain http instead of https.
    #[arg(long, global = true, hide = true)]
    pub no_tls: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List machines as a table.
    List {
        /// Comma-separated columns from: id, macs, ip, serial, uuid, arch, hostname, profile,
        /// state, phase, stalled, pinned, ipmiaddr, power, providerid, rack, lastboot, server (the
        /// boot server that saw it last, with several), notes
        /// [default: id,macs,ip,profile,state,phase,stalled,hostname,ipmiaddr,power]
        #[arg(long)]
        fields: Option<String>,
        /// Leave out the header line.
        #[arg(long)]
        no_legend: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Only machines in this state (waiting, configured, installing, running).
        #[arg(long)]
        state: Option<String>,
        /// Only machines in this profile (`-` for none).
        #[arg(long)]
        profile: Option<String>,
        /// Free-text search over ids, MACs, names, addresses and notes.
        #[arg(long, short = 'q')]
        search: Option<String>,
        /// Only machines stalled in a boot phase.
        #[arg(long)]
        stalled: bool,
    },
    /// A machine's boots (or an unregistered MAC's): every step in order, with times.
    Timeline {
        /// the machine's id, or a MAC
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// MACs seen by DHCP that are no machine yet.
    Unregistered {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one machine.
    Show {
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Assign a machine to a profile and pin it there.
    Assign {
        id: String,
        profile: String,
        /// Go past the profile's quantity.
        #[arg(long)]
        force: bool,
    },
    /// Take a machine out of its profile and hold it for an operator.
    Unassign { id: String },
    /// Hand a held machine back to the assignment rules.
    Release { id: String },
    /// Set a field: hostname, state, ipmi-addr, provider-id, rack (RACK or RACK/UNIT), notes,
    /// metadata (comma-separated labels), etcd-token; Mayu's names work too (cabinet,
    /// providerid, ipmiaddr, etcdtoken). VALUE may start with `-`.
    Set {
        id: String,
        field: String,
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Set (or with --unset remove) a template env override; VALUE is JSON or a plain string
    /// and may start with `-` (`mayuctl override ID docker_args --log-level=warn`).
    Override {
        id: String,
        key: String,
        #[arg(allow_hyphen_values = true)]
        value: Option<String>,
        #[arg(long)]
        unset: bool,
    },
    /// Install the machine's profile again on its next boot.
    Reinstall { id: String },
    /// Power a machine on, off or through a cycle over its BMC, ask its state, or reinstall it
    /// now (reinstall flag, next boot from the network, power cycle). Either order:
    /// `power ID ACTION` or `power ACTION ID`.
    Power {
        /// the machine (id or MAC), or the action
        first: String,
        /// the action (on, off, cycle, status, reinstall), or the machine
        second: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Mark a machine as booted (state running). On the machine itself, without ID: its serial
    /// comes from SERIAL in /etc/mayu-env and, with --update-versions, the software versions
    /// from /etc/os-release and /etc/mayu-env are recorded too (as Mayu's mayuctl did).
    BootComplete {
        /// the machine (id, MAC or serial); default: SERIAL from the env file
        id: Option<String>,
        /// Record the OS and software versions this machine runs.
        #[arg(long)]
        update_versions: bool,
        /// Where SERIAL and the *_VERSION values are read from.
        #[arg(long, default_value = "/etc/mayu-env")]
        env_file: PathBuf,
        /// Where the OS VERSION is read from.
        #[arg(long, default_value = "/etc/os-release")]
        os_release: PathBuf,
    },
    /// A machine's record in Mayu's `status` layout (one `Name: | value` line per field).
    Status { id: String },
    /// mayuctl's version, and the server's when it answers.
    Version,
    /// The server's configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Remove a machine from the inventory (its history stays in git).
    Retire { id: String },
    /// A machine's audit trail, newest first.
    History {
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Profiles and how full they are.
    Profiles {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// DHCP leases.
    Leases {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// DHCP clients ignored as unknown (`known_only`): the MACs `add` can enrol.
    Ignored {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Enrol a MAC as a machine before it boots (with `known_only`, dnsmasq then answers it).
    Add {
        /// the machine's MAC address
        mac: String,
        /// Assign (and pin) it to this profile at once.
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        hostname: Option<String>,
        /// RACK or RACK/UNIT.
        #[arg(long)]
        rack: Option<String>,
        /// Assign past a full quota.
        #[arg(long)]
        force: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Service status (boot HTTP, API, dnsmasq, template reloader).
    Services {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Follow the event stream, one line per event.
    Watch {
        /// Resume after this event number (replays what the server still keeps).
        #[arg(long)]
        after: Option<u64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a machine's rendered template (ipxe, ignition, cloud-config, metadata).
    Render { id: String, template: String },
    /// Manage API tokens (admin token needed).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print shell completions (bash, zsh, fish, elvish, powershell); the Debian package
    /// installs them.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print the man page, or with --out-dir write one per subcommand (`mayuctl.1`,
    /// `mayuctl-list.1`, ...).
    #[command(hide = true)]
    Man {
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// `mayuctl completions SHELL`: generated from the same definition that parses the command line.
pub fn completions(shell: clap_complete::Shell) {
    use clap::CommandFactory;
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "mayuctl",
        &mut std::io::stdout(),
    );
}

/// `mayuctl man [--out-dir DIR]`: the top page to stdout, or every page into DIR.
pub fn man(out_dir: Option<&std::path::Path>) -> std::io::Result<()> {
    use clap::CommandFactory;
    match out_dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
    }
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the configuration the server runs with (or write it to --config-file).
    Get {
        #[arg(long)]
        config_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// List token names and scopes.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a token and print its secret (shown only now).
    Add {
        name: String,
        /// `read` (the default) or `admin`.
        #[arg(long, default_value = "read", value_parser = ["read", "admin"])]
        scope: String,
    },
    /// Revoke a token.
    Revoke { name: String },
}
