//! `mayuctl`: the operator's command line for a mayu boot server. It talks only to the API
//! (`--server`/`MAYU_SERVER`, token from `--token`/`MAYU_TOKEN`/`--token-file`) through
//! [`mayu::client`]. Exit codes: 0 ok, 1 failure, 2 usage.

mod args;
mod legacy;
mod output;
mod power;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::Parser;
use serde_json::Value;

use mayu::api::machines::MachinePatch;
use mayu::client::{Call, Client, ClientError, MachineFilter};
use mayu::machine::{Rack, State};
use mayu::tokens::Scope;

use args::{Cli, Command, ConfigCommand, TokenCommand};
use output::clean;

/// A mistake in how mayuctl was called, found after argument parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

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

/// Prints a read: the server's JSON with `--json`, else the text `show` makes of its answer.
async fn print<T: serde::de::DeserializeOwned>(
    call: Call<'_, T>,
    json: bool,
    show: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    let text = if json {
        output::json(&call.raw().await?)
    } else {
        show(&call.send().await?)
    };
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(())
}

/// The `--fields` of `mayuctl list`, each a known column.
fn list_fields(fields: Option<&str>) -> Result<Vec<&str>, Usage> {
    let fields: Vec<&str> = fields
        .unwrap_or(output::DEFAULT_FIELDS)
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    if let Some(f) = fields
        .iter()
        .find(|f| !output::FIELDS.iter().any(|(name, _)| name == *f))
    {
        let known: Vec<&str> = output::FIELDS.iter().map(|(n, _)| *n).collect();
        return Err(Usage(format!(
            "unknown field `{f}` for --fields; available: {}",
            known.join(", ")
        )));
    }
    Ok(fields)
}

/// `RACK` or `RACK/UNIT`.
fn parse_rack(value: &str) -> Result<Rack, Usage> {
    let (rack, unit) = match value.split_once('/') {
        Some((r, u)) => {
            let u: u32 = u
                .parse()
                .map_err(|_| Usage(format!("rack unit `{u}` is not a number; use RACK/UNIT")))?;
            (r.to_string(), Some(u))
        }
        None => (value.to_string(), None),
    };
    Ok(Rack { rack, unit })
}

/// `mayuctl set ID FIELD VALUE` as a PATCH.
fn set_patch(field: &str, value: &str) -> Result<MachinePatch, Usage> {
    let mut patch = MachinePatch::default();
    match field.replace('_', "-").to_lowercase().as_str() {
        "hostname" => patch.hostname = Some(value.into()),
        "state" => patch.state = Some(value.parse::<State>().map_err(Usage)?),
        "ipmi-addr" | "ipmiaddr" | "ipmi" => patch.ipmi_addr = Some(value.into()),
        "provider-id" | "providerid" => patch.provider_id = Some(value.into()),
        "notes" => patch.notes = Some(value.into()),
        // Mayu's cabinet is our rack (RACK/UNIT works here too).
        "rack" | "cabinet" => patch.rack = Some(parse_rack(value)?),
        "profile" => patch.profile = Some(Some(value.into())),
        // Mayu's comma-separated fleet metadata.
        "metadata" => {
            patch.metadata = Some(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        }
        "etcd-token" | "etcdtoken" => patch.etcd_token = Some(value.into()),
        _ => {
            return Err(Usage(format!(
                "unknown field `{field}`; settable: hostname, state, ipmi-addr, \
                 provider-id, rack (cabinet), notes, profile, metadata, etcd-token"
            )))
        }
    }
    Ok(patch)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Generated from the command line's definition: no server or token needed.
    match &cli.command {
        Command::Completions { shell } => {
            args::completions(*shell);
            return Ok(());
        }
        Command::Man { out_dir } => {
            return args::man(out_dir.as_deref()).context("cannot write the man pages");
        }
        _ => {}
    }
    if let Command::Version = cli.command {
        println!("mayuctl version {}", env!("CARGO_PKG_VERSION"));
    }
    let server = legacy::server(cli.host.as_deref(), cli.port, cli.no_tls)
        .unwrap_or_else(|| cli.server.clone());
    let client = Client::new(&server, token(&cli)?, cli.ca_cert.as_deref())?;
    match cli.command {
        Command::List {
            fields,
            no_legend,
            json,
            state,
            profile,
            search,
            stalled,
        } => {
            let fields = list_fields(fields.as_deref())?;
            let filter = MachineFilter {
                state,
                profile,
                search,
                stalled,
            };
            print(client.machines(&filter), json, |ms| {
                output::machines(ms, &fields, !no_legend)
            })
            .await?;
        }
        Command::Show { id, json } => print(client.machine(&id), json, output::machine).await?,
        Command::Timeline { id, json } => {
            print(client.timeline(&id), json, |t| {
                output::timeline(&t.timeline)
            })
            .await?
        }
        Command::Unregistered { json } => {
            print(client.unregistered(), json, |u| output::unregistered(u)).await?
        }
        Command::Assign { id, profile, force } => {
            let patch = MachinePatch {
                profile: Some(Some(profile)),
                force,
                ..MachinePatch::default()
            };
            let m = client.update(&id, &patch).await?;
            println!(
                "{} assigned to {}{}",
                clean(m.id.as_str()),
                clean(m.profile.as_deref().unwrap_or_default()),
                if force { " (forced)" } else { "" }
            );
        }
        Command::Unassign { id } => {
            let patch = MachinePatch {
                profile: Some(None),
                ..MachinePatch::default()
            };
            let m = client.update(&id, &patch).await?;
            println!(
                "{} unassigned and held for an operator",
                clean(m.id.as_str())
            );
        }
        Command::Release { id } => {
            let patch = MachinePatch {
                pin: Some(false),
                ..MachinePatch::default()
            };
            let m = client.update(&id, &patch).await?;
            let now = m.profile.as_deref().map_or_else(|| "waiting".into(), clean);
            println!(
                "{} released to the assignment rules (now {now})",
                clean(m.id.as_str())
            );
        }
        Command::Set { id, field, value } => {
            let m = client.update(&id, &set_patch(&field, &value)?).await?;
            println!("{}: {field} set to {value}", clean(m.id.as_str()));
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
                (Some(v), false) => serde_json::from_str::<Value>(&v).unwrap_or(Value::String(v)),
            };
            let mut patch = MachinePatch::default();
            patch
                .overrides
                .insert(key.clone(), (!v.is_null()).then(|| v.clone()));
            let m = client.update(&id, &patch).await?;
            if v.is_null() {
                println!("{}: override {key} removed", clean(m.id.as_str()));
            } else {
                println!("{}: override {key} = {v}", clean(m.id.as_str()));
            }
        }
        Command::Reinstall { id } => {
            let m = client.reinstall(&id).await?;
            println!(
                "{} will install {} again on its next boot",
                clean(m.id.as_str()),
                clean(m.profile.as_deref().unwrap_or_default())
            );
        }
        Command::Power {
            first,
            second,
            json,
        } => power::run(&client, &first, &second, json).await?,
        Command::BootComplete {
            id: Some(id),
            update_versions: false,
            ..
        } => {
            let m = client.boot_complete(&id).await?;
            println!("{} is {}", clean(m.id.as_str()), m.state);
        }
        Command::BootComplete {
            id,
            update_versions,
            env_file,
            os_release,
        } => {
            let serial = match id {
                // With an ID, the versions still come from this machine's files.
                Some(id) => {
                    let mut env =
                        legacy::env_file(&std::fs::read_to_string(&env_file).unwrap_or_default());
                    let os = legacy::env_file(
                        &std::fs::read_to_string(&os_release)
                            .with_context(|| format!("cannot read {}", os_release.display()))?,
                    );
                    if let Some(v) = os.get("VERSION") {
                        env.entry("VERSION".into()).or_insert_with(|| v.clone());
                    }
                    client
                        .mayu_put(
                            &id,
                            "boot_complete",
                            &legacy::boot_complete_body(&env, true),
                        )
                        .await?;
                    id
                }
                None => {
                    legacy::boot_complete_here(&client, &env_file, &os_release, update_versions)
                        .await?
                }
            };
            println!("{} reported boot complete", clean(&serial));
        }
        Command::Status { id } => {
            let m = client.machine(&id).send().await?;
            println!("{}", legacy::status(&m));
        }
        Command::Version => match client.health().send().await {
            Ok(h) => println!(
                "server {} version {}",
                clean(client.server()),
                clean(h["version"].as_str().unwrap_or("unknown"))
            ),
            Err(e) => eprintln!("mayuctl: the server did not answer: {e}"),
        },
        Command::Config(ConfigCommand::Get { config_file }) => {
            let text = client.config_text().await?;
            match config_file {
                Some(p) => std::fs::write(&p, &text)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => print!("{text}"),
            }
        }
        Command::Retire { id } => {
            let r = client.retire(&id).await?;
            println!(
                "{} retired (its history stays in the audit log)",
                clean(r.retired.as_str())
            );
        }
        Command::History { id, json } => {
            print(client.history(&id), json, |h| output::history(h)).await?
        }
        Command::Profiles { json } => print(client.profiles(), json, output::profiles).await?,
        Command::Leases { json } => print(client.leases(), json, |l| output::leases(l)).await?,
        Command::Ignored { json } => print(client.ignored(), json, |c| output::ignored(c)).await?,
        Command::Add {
            mac,
            profile,
            hostname,
            rack,
            force,
            json,
        } => {
            let mac = mac
                .parse()
                .map_err(|e: mayu::machine::IdError| Usage(format!("`{mac}`: {e}")))?;
            let e = mayu::engine::Enrolment {
                mac: Some(mac),
                profile,
                hostname,
                rack: rack.as_deref().map(parse_rack).transpose()?,
                force,
            };
            let m = client.enrol(&e).await?;
            if json {
                println!("{}", output::json(&serde_json::to_value(&m)?));
            } else {
                println!("{}", output::machine(&m));
            }
        }
        Command::Services { json } => {
            print(client.services(), json, |s| output::services(s)).await?
        }
        Command::Token(TokenCommand::List { json }) => {
            print(client.tokens(), json, |t| output::tokens(t)).await?
        }
        Command::Token(TokenCommand::Add { name, scope }) => {
            let scope = if scope == "admin" {
                Scope::Admin
            } else {
                Scope::Read
            };
            let t = client.add_token(&name, scope).await?;
            eprintln!(
                "token `{}` ({}) created; store its secret now, it is not shown again:",
                clean(&t.name),
                t.scope.as_str()
            );
            println!("{}", clean(&t.secret));
        }
        Command::Token(TokenCommand::Revoke { name }) => {
            client.revoke_token(&name).await?;
            println!("token `{name}` revoked");
        }
        Command::Watch { after, count, json } => watch(&client, after, count, json).await?,
        Command::Render { id, template } => {
            let text = client.render(&id, &template).await?;
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
        // Answered above, before a client exists.
        Command::Completions { .. } | Command::Man { .. } => {}
    }
    Ok(())
}

async fn watch(
    client: &Client,
    mut after: Option<u64>,
    count: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
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
        let line = if json {
            output::json_safe(&msg.data)
        } else {
            let event = msg.line();
            let seq = msg.id.map(|i| i.to_string()).unwrap_or_else(|| "-".into());
            let at = event.at.as_deref().map(output::short_time);
            let at = at.filter(|a| !a.is_empty()).unwrap_or_else(|| "-".into());
            format!("{seq} {} {}", clean(&at), clean(&event.summary))
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
                Some(ce) => eprintln!("mayuctl: {}", output::clean_lines(&ce.to_string())),
                None => eprintln!("mayuctl: {}", output::clean_lines(&format!("{e:#}"))),
            }
            ExitCode::from(1)
        }
    }
}
