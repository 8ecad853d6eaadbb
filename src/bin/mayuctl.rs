//! `mayuctl`: the operator's command line for a mayu boot server. It talks only to the API
//! (`--server`/`MAYU_SERVER`, token from `--token`/`MAYU_TOKEN`/`--token-file`).
//! Exit codes: 0 ok, 1 failure, 2 usage.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use mayu::client::{Client, ClientError};
use mayu::text::escape_control;

#[derive(Parser, Debug)]
#[command(
    name = "mayuctl",
    version,
    about = "Operate a mayu boot server through its API",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage."
)]
struct Cli {
    /// API address of the mayu server.
    #[arg(
        long,
        env = "MAYU_SERVER",
        default_value = "http://127.0.0.1:4080",
        global = true
    )]
    server: String,
    /// API bearer token.
    #[arg(long, env = "MAYU_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// File holding the API token (e.g. the `tokens.json.admin` written at first start).
    #[arg(long, env = "MAYU_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// PEM certificate to trust for an https server (e.g. its self-signed certificate).
    #[arg(long, env = "MAYU_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List machines as a table.
    List {
        /// Comma-separated columns from: id, macs, ip, serial, uuid, arch, hostname, profile,
        /// state, phase, pinned, ipmiaddr, providerid, rack, lastboot, notes
        /// [default: id,macs,ip,profile,state,phase,hostname,ipmiaddr]
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
    /// Set a field: hostname, state, ipmi-addr, provider-id, rack (RACK or RACK/UNIT), notes.
    Set {
        id: String,
        field: String,
        value: String,
    },
    /// Set (or with --unset remove) a template env override; VALUE is JSON or a plain string.
    Override {
        id: String,
        key: String,
        value: Option<String>,
        #[arg(long)]
        unset: bool,
    },
    /// Install the machine's profile again on its next boot.
    Reinstall { id: String },
    /// Mark a machine as booted (state running).
    BootComplete { id: String },
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
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
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

/// A mistake in how mayuctl was called, found after argument parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

const FIELDS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("macs", "MACS"),
    ("ip", "IP"),
    ("serial", "SERIAL"),
    ("uuid", "UUID"),
    ("arch", "ARCH"),
    ("hostname", "HOSTNAME"),
    ("profile", "PROFILE"),
    ("state", "STATE"),
    ("phase", "PHASE"),
    ("pinned", "PINNED"),
    ("ipmiaddr", "IPMI"),
    ("providerid", "PROVIDER ID"),
    ("rack", "RACK"),
    ("lastboot", "LAST BOOT"),
    ("notes", "NOTES"),
];
const DEFAULT_FIELDS: &str = "id,macs,ip,profile,state,phase,hostname,ipmiaddr";
const PHASES: [&str; 8] = [
    "first_seen",
    "dhcp",
    "ipxe",
    "kernel",
    "initrd",
    "config",
    "disk_boot",
    "boot_complete",
];

/// A field of a server answer as terminal text. Everything mayuctl prints from the server goes
/// through [`clean`]: machine text is data, so a newline in a serial cannot forge a table row
/// and an escape sequence in a provider id cannot clear the operator's screen.
fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => clean(x),
        Some(Value::Null) | None => String::new(),
        Some(other) => clean(&other.to_string()),
    }
}

/// `text` with every control character as a visible escape (`\n`, `\x1b`, `\0`…).
fn clean(text: &str) -> String {
    escape_control(text).into_owned()
}

/// Multi-line text from the server (an error's detail): each line cleaned, the breaks kept.
fn clean_lines(text: &str) -> String {
    text.split('\n').map(clean).collect::<Vec<_>>().join("\n")
}

/// JSON for the terminal. serde_json escapes C0 controls inside strings but writes DEL and C1
/// (U+0080–U+009F, which some terminals act on) raw; those become `\u` escapes, which is the
/// same JSON value. Outside strings only the pretty printer's line breaks are control
/// characters, and they stay.
fn json_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `2026-11-25T04:15:23.123Z` → `2026-11-25 04:15:23`, as Mayu printed times.
fn short_time(t: &str) -> String {
    let t = t.replace('T', " ");
    t.get(..19).map(str::to_string).unwrap_or(t)
}

fn current_phase(m: &Value) -> String {
    let Some(p) = m.get("phases") else {
        return String::new();
    };
    PHASES
        .iter()
        .enumerate()
        .filter_map(|(i, name)| p.get(*name).and_then(|t| t.as_str()).map(|t| (t, i, *name)))
        .max()
        .map(|(_, _, name)| name.replace('_', " "))
        .unwrap_or_default()
}

fn field(m: &Value, f: &str) -> String {
    match f {
        "macs" => m
            .get("macs")
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .map(clean)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        "ipmiaddr" => s(m, "ipmi_addr"),
        "providerid" => s(m, "provider_id"),
        "phase" => current_phase(m),
        "pinned" => if m.get("pinned").and_then(|p| p.as_bool()) == Some(true) {
            "yes"
        } else {
            "no"
        }
        .into(),
        "rack" => match m.get("rack") {
            Some(r) if r.is_object() => {
                let unit = s(r, "unit");
                if unit.is_empty() {
                    s(r, "rack")
                } else {
                    format!("{}/{unit}", s(r, "rack"))
                }
            }
            _ => String::new(),
        },
        "lastboot" => m
            .get("phases")
            .and_then(|p| p.get("boot_complete"))
            .and_then(|t| t.as_str())
            .map(short_time)
            .unwrap_or_default(),
        other => s(m, other),
    }
}

/// Columns separated by two spaces; the last column is not padded. Cells are cleaned here too,
/// so a row is always exactly one line whatever a caller passes in.
fn table(headers: &[&str], rows: &[Vec<String>], legend: bool) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            let c = if c.is_empty() { "-" } else { c };
            if i + 1 == n {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = Vec::new();
    if legend {
        out.push(line(headers.to_vec()));
    }
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

fn print_json(v: &Value) {
    println!(
        "{}",
        json_safe(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()))
    );
}

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", Client::segment(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn machine_path(id: &str) -> String {
    format!("/api/v1/machines/{}", Client::segment(id))
}

fn token(cli: &Cli) -> anyhow::Result<Option<String>> {
    if let Some(t) = &cli.token {
        return Ok(Some(t.clone()));
    }
    match &cli.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the token file {}", p.display()))?;
            Ok(Some(t.trim().to_string()))
        }
        None => Ok(None),
    }
}

fn show(m: &Value) {
    let mut rows: Vec<(String, String)> = Vec::new();
    for (f, h) in FIELDS {
        rows.push((h.to_lowercase(), field(m, f)));
    }
    let assigned_by = match m.get("assigned_by") {
        Some(Value::Object(o)) => match (o.get("by"), o.get("name")) {
            (Some(b), Some(Value::String(n))) => format!("{} {n}", b.as_str().unwrap_or("")),
            (Some(b), _) => b.as_str().unwrap_or("").to_string(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    rows.push(("assigned by".into(), assigned_by));
    rows.push((
        "reinstall".into(),
        if m.get("reinstall").and_then(|r| r.as_bool()) == Some(true) {
            "yes".into()
        } else {
            "no".into()
        },
    ));
    if let Some(Value::Object(o)) = m.get("overrides") {
        for (k, v) in o {
            rows.push((format!("override {}", clean(k)), clean(&v.to_string())));
        }
    }
    if let Some(p) = m.get("phases").and_then(|p| p.as_object()) {
        for name in PHASES {
            if let Some(t) = p.get(name).and_then(|t| t.as_str()) {
                rows.push((format!("phase {}", name.replace('_', " ")), short_time(t)));
            }
        }
    }
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        let v = if v.is_empty() {
            "-".to_string()
        } else {
            clean(&v)
        };
        println!("{:<w$}  {v}", format!("{}:", clean(&k)), w = w + 1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(&cli.server, token(&cli)?, cli.ca_cert.as_deref())?;
    match &cli.command {
        Command::List {
            fields,
            no_legend,
            json,
            state,
            profile,
            search,
        } => {
            let fields: Vec<&str> = fields
                .as_deref()
                .unwrap_or(DEFAULT_FIELDS)
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .collect();
            let mut headers = Vec::new();
            for f in &fields {
                match FIELDS.iter().find(|(name, _)| name == f) {
                    Some((_, h)) => headers.push(*h),
                    None => {
                        let known: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
                        return Err(Usage(format!(
                            "unknown field `{f}` for --fields; available: {}",
                            known.join(", ")
                        ))
                        .into());
                    }
                }
            }
            let path = format!(
                "/api/v1/machines{}",
                query(&[("state", state), ("profile", profile), ("q", search)])
            );
            let machines = client.get(&path).await?;
            if *json {
                print_json(&machines);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = machines
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| fields.iter().map(|f| field(m, f)).collect())
                        .collect()
                })
                .unwrap_or_default();
            let out = table(&headers, &rows, !no_legend);
            if !out.is_empty() {
                println!("{out}");
            }
        }
        Command::Show { id, json } => {
            let m = client.get(&machine_path(id)).await?;
            if *json {
                print_json(&m);
            } else {
                show(&m);
            }
        }
        Command::Assign { id, profile, force } => {
            let mut body = json!({ "profile": profile });
            if *force {
                body["force"] = json!(true);
            }
            let m = client.patch(&machine_path(id), &body).await?;
            println!(
                "{} assigned to {}{}",
                s(&m, "id"),
                s(&m, "profile"),
                if *force { " (forced)" } else { "" }
            );
        }
        Command::Unassign { id } => {
            let m = client
                .patch(&machine_path(id), &json!({ "profile": null }))
                .await?;
            println!("{} unassigned and held for an operator", s(&m, "id"));
        }
        Command::Release { id } => {
            let m = client
                .patch(&machine_path(id), &json!({ "pin": false }))
                .await?;
            let p = s(&m, "profile");
            let now = if p.is_empty() {
                "waiting".to_string()
            } else {
                p
            };
            println!(
                "{} released to the assignment rules (now {now})",
                s(&m, "id")
            );
        }
        Command::Set { id, field, value } => {
            let body = match field.replace('_', "-").to_lowercase().as_str() {
                "hostname" => json!({ "hostname": value }),
                "state" => json!({ "state": value.to_lowercase() }),
                "ipmi-addr" | "ipmiaddr" | "ipmi" => json!({ "ipmi_addr": value }),
                "provider-id" | "providerid" => json!({ "provider_id": value }),
                "notes" => json!({ "notes": value }),
                "rack" => {
                    let (rack, unit) = match value.split_once('/') {
                        Some((r, u)) => {
                            let u: u32 = u.parse().map_err(|_| {
                                Usage(format!("rack unit `{u}` is not a number; use RACK/UNIT"))
                            })?;
                            (r.to_string(), Some(u))
                        }
                        None => (value.clone(), None),
                    };
                    json!({ "rack": { "rack": rack, "unit": unit } })
                }
                "profile" => json!({ "profile": value }),
                _ => {
                    return Err(Usage(format!(
                        "unknown field `{field}`; settable: hostname, state, ipmi-addr, \
                         provider-id, rack, notes, profile"
                    ))
                    .into())
                }
            };
            let m = client.patch(&machine_path(id), &body).await?;
            println!("{}: {field} set to {value}", s(&m, "id"));
        }
        Command::Override {
            id,
            key,
            value,
            unset,
        } => {
            let v = match (value, unset) {
                (Some(_), true) => {
                    return Err(Usage("give either VALUE or --unset, not both".into()).into())
                }
                (None, false) => {
                    return Err(
                        Usage("give a VALUE, or --unset to remove the override".into()).into(),
                    )
                }
                (None, true) => Value::Null,
                // JSON when it parses (numbers, lists, objects, true/false), else a string.
                (Some(v), false) => {
                    serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.clone()))
                }
            };
            let mut overrides = serde_json::Map::new();
            overrides.insert(key.clone(), v.clone());
            let m = client
                .patch(&machine_path(id), &json!({ "overrides": overrides }))
                .await?;
            if v.is_null() {
                println!("{}: override {key} removed", s(&m, "id"));
            } else {
                println!("{}: override {key} = {v}", s(&m, "id"));
            }
        }
        Command::Reinstall { id } => {
            let m = client
                .post(&format!("{}/reinstall", machine_path(id)))
                .await?;
            println!(
                "{} will install {} again on its next boot",
                s(&m, "id"),
                s(&m, "profile")
            );
        }
        Command::BootComplete { id } => {
            let m = client
                .post(&format!("{}/boot-complete", machine_path(id)))
                .await?;
            println!("{} is {}", s(&m, "id"), s(&m, "state"));
        }
        Command::Retire { id } => {
            let r = client.delete(&machine_path(id)).await?;
            println!(
                "{} retired (its history stays in the audit log)",
                s(&r, "retired")
            );
        }
        Command::History { id, json } => {
            let h = client.get(&format!("{}/history", machine_path(id))).await?;
            if *json {
                print_json(&h);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = h
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            let names: Vec<&str> = e
                                .get("fields")
                                .and_then(|f| f.as_array())
                                .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
                                .unwrap_or_default();
                            // A first commit touches every field; a count reads better.
                            let fields = if names.len() > 5 {
                                format!("({} fields)", names.len())
                            } else {
                                names.join(",")
                            };
                            vec![
                                s(e, "commit").chars().take(10).collect(),
                                short_time(&s(e, "time")),
                                s(e, "author"),
                                fields,
                                s(e, "message"),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "{}",
                table(
                    &["COMMIT", "TIME", "AUTHOR", "FIELDS", "MESSAGE"],
                    &rows,
                    true
                )
            );
        }
        Command::Profiles { json } => {
            let p = client.get("/api/v1/profiles").await?;
            if *json {
                print_json(&p);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = p
                .get("profiles")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            let fill = p
                                .get("fill")
                                .and_then(|f| f.as_f64())
                                .map(|f| format!("{:.0}%", f * 100.0))
                                .unwrap_or_default();
                            let quantity = match p.get("quantity") {
                                Some(Value::Number(n)) => n.to_string(),
                                _ => "∞".into(),
                            };
                            let default =
                                if p.get("is_default").and_then(|d| d.as_bool()) == Some(true) {
                                    "default".to_string()
                                } else {
                                    String::new()
                                };
                            vec![
                                s(p, "name"),
                                quantity,
                                s(p, "assigned"),
                                s(p, "waiting"),
                                s(p, "running"),
                                fill,
                                default,
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "{}",
                table(
                    &["NAME", "QUANTITY", "ASSIGNED", "WAITING", "RUNNING", "FILL", "DEFAULT"],
                    &rows,
                    true
                )
            );
            println!("unassigned machines: {}", s(&p, "unassigned"));
        }
        Command::Leases { json } => {
            let l = client.get("/api/v1/leases").await?;
            if *json {
                print_json(&l);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = l
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            let expires = s(x, "expires");
                            vec![
                                s(x, "mac"),
                                s(x, "ip"),
                                s(x, "hostname"),
                                if expires.is_empty() {
                                    "never".into()
                                } else {
                                    short_time(&expires)
                                },
                                s(x, "machine"),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "{}",
                table(
                    &["MAC", "IP", "HOSTNAME", "EXPIRES", "MACHINE"],
                    &rows,
                    true
                )
            );
        }
        Command::Services { json } => {
            let v = client.get("/api/v1/services").await?;
            if *json {
                print_json(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            vec![
                                s(x, "name"),
                                s(x, "status"),
                                s(x, "restarts"),
                                short_time(&s(x, "since")),
                                s(x, "detail"),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "{}",
                table(
                    &["SERVICE", "STATUS", "RESTARTS", "SINCE", "DETAIL"],
                    &rows,
                    true
                )
            );
        }
        Command::Token(TokenCommand::List { json }) => {
            let v = client.get("/api/v1/tokens").await?;
            if *json {
                print_json(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| vec![s(t, "name"), s(t, "scope")])
                        .collect()
                })
                .unwrap_or_default();
            println!("{}", table(&["NAME", "SCOPE"], &rows, true));
        }
        Command::Token(TokenCommand::Add { name, scope }) => {
            let v = client
                .post_json("/api/v1/tokens", &json!({"name": name, "scope": scope}))
                .await?;
            eprintln!(
                "token `{}` ({}) created; store its secret now, it is not shown again:",
                s(&v, "name"),
                s(&v, "scope")
            );
            println!("{}", s(&v, "secret"));
        }
        Command::Token(TokenCommand::Revoke { name }) => {
            client
                .delete(&format!("/api/v1/tokens/{}", Client::segment(name)))
                .await?;
            println!("token `{name}` revoked");
        }
        Command::Watch { after, count, json } => {
            watch(&client, *after, *count, *json).await?;
        }
        Command::Render { id, template } => {
            let text = client
                .get_text(&format!(
                    "{}/render/{}",
                    machine_path(id),
                    Client::segment(template)
                ))
                .await?;
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(())
}

async fn watch(
    client: &Client,
    mut after: Option<u64>,
    count: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut seen = 0u64;
    let mut stream = client.events(after).await?;
    let mut since_connect = 0u64;
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
        let Some(msg) = stream.next().await? else {
            // The server drops a client that fell behind; resume once where we stopped. A
            // stream that closes before sending anything is not retried.
            if since_connect == 0 {
                return Err(anyhow!("the event stream at {} closed", client.server()));
            }
            stream = client.events(after).await?;
            since_connect = 0;
            continue;
        };
        if msg.id.is_some() {
            after = msg.id;
        }
        since_connect += 1;
        seen += 1;
        let v: Value = serde_json::from_str(&msg.data).unwrap_or(Value::Null);
        let line = if json {
            json_safe(&msg.data)
        } else {
            let seq = msg.id.map(|i| i.to_string()).unwrap_or_else(|| "-".into());
            let at = short_time(&s(&v, "at"));
            let at = if at.is_empty() { "-".to_string() } else { at };
            format!("{seq} {at} {}", s(&v, "summary"))
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        // Piped output (scripts, tests) sees each event as it happens.
        out.flush()?;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // clap prints help/version (exit 0) or the usage error (exit 2) itself.
        Err(e) => e.exit(),
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Usage>().is_some() => {
            eprintln!("mayuctl: {e}");
            eprintln!("run `mayuctl --help` for usage");
            ExitCode::from(2)
        }
        Err(e) => {
            // An error's detail may quote what the server was sent or holds.
            match e.downcast_ref::<ClientError>() {
                Some(ce) => eprintln!("mayuctl: {}", clean_lines(&ce.to_string())),
                None => eprintln!("mayuctl: {}", clean_lines(&format!("{e:#}"))),
            }
            ExitCode::from(1)
        }
    }
}
