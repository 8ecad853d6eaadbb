//! Mayu's mayuctl verbs: `status` in its layout, `boot-complete --update-versions` from
//! `/etc/mayu-env` and `/etc/os-release`, `config get`, and its `--host/--port/--no-tls`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Map, Value};

use mayu::client::Client;
use mayu::machine::Machine;

use crate::output::clean;

/// `--server` from Mayu's `--host`, `--port` and `--no-tls` (https on port 4080 by default).
pub fn server(host: Option<&str>, port: Option<u16>, no_tls: bool) -> Option<String> {
    if host.is_none() && port.is_none() {
        return None;
    }
    let scheme = if no_tls { "http" } else { "https" };
    let host = host.unwrap_or("localhost");
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Some(format!("{scheme}://{host}:{}", port.unwrap_or(4080)))
}

/// `KEY=value` lines as systemd's EnvironmentFile and godotenv read them: `#` comments, an
/// optional `export `, values in single or double quotes.
pub fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            if line.starts_with('#') {
                return None;
            }
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// Mayu's `*_VERSION` keys and the body field each goes into.
const VERSION_KEYS: [(&str, &str); 8] = [
    ("VERSION", "CoreOSVersion"),
    ("MAYU_VERSION", "MayuVersion"),
    ("DOCKER_VERSION", "DockerVersion"),
    ("ETCD_VERSION", "EtcdVersion"),
    ("FLEET_VERSION", "FleetVersion"),
    ("YOCHU_VERSION", "YochuVersion"),
    ("RKT_VERSION", "RktVersion"),
    ("K8S_VERSION", "K8sVersion"),
];

/// What `boot-complete` sends: Mayu's body, with the versions when asked for.
pub fn boot_complete_body(env: &BTreeMap<String, String>, versions: bool) -> Value {
    let mut o = Map::new();
    if versions {
        for (key, field) in VERSION_KEYS {
            if let Some(v) = env.get(key).filter(|v| !v.is_empty()) {
                o.insert(field.into(), json!(v));
            }
        }
    }
    Value::Object(o)
}

/// `mayuctl boot-complete` on the machine itself (no ID): Mayu's request, authorised by a
/// token if one is given, else by the server's `compat.mayu.allow_from`.
pub async fn boot_complete_here(
    client: &Client,
    env_path: &Path,
    os_release: &Path,
    versions: bool,
) -> anyhow::Result<String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let mut env = env_file(&read(env_path)?);
    let serial = env
        .get("SERIAL")
        .filter(|s| !s.is_empty())
        .cloned()
        .with_context(|| format!("no SERIAL in {}", env_path.display()))?;
    if versions {
        // The OS's VERSION comes from os-release; the env file's own keys win.
        let os = env_file(&read(os_release)?);
        if let Some(v) = os.get("VERSION") {
            env.entry("VERSION".into()).or_insert_with(|| v.clone());
        }
    }
    let body = boot_complete_body(&env, versions);
    client.mayu_put(&serial, "boot_complete", &body).await?;
    Ok(serial)
}

/// Mayu's `status` layout: `Name: | value`, columns aligned.
pub fn status(m: &Machine) -> String {
    let rack = m.rack.as_ref();
    let v = |k: &str| m.versions.get(k).cloned().unwrap_or_default();
    let rows: Vec<(&str, String)> = vec![
        (
            "Serial:",
            m.serial.clone().unwrap_or_else(|| m.id.to_string()),
        ),
        ("IP:", m.ip.map(|i| i.to_string()).unwrap_or_default()),
        ("IPMI:", m.ipmi_addr.clone().unwrap_or_default()),
        ("Provider ID:", m.provider_id.clone().unwrap_or_default()),
        (
            "Macs:",
            m.macs
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("Cabinet:", rack.map(|r| r.rack.clone()).unwrap_or_default()),
        (
            "Machine on Cabinet:",
            rack.and_then(|r| r.unit)
                .map(|u| u.to_string())
                .unwrap_or_default(),
        ),
        ("Hostname:", m.hostname.clone().unwrap_or_default()),
        ("MachineID:", m.id.to_string()),
        ("Profile:", m.profile.clone().unwrap_or_default()),
        ("State:", m.state.to_string()),
        ("EtcdToken:", m.etcd_token.clone().unwrap_or_default()),
        ("Metadata:", m.metadata.join(", ")),
        ("Container Linux:", v("os")),
        ("Mayu:", v("mayu")),
        ("Docker:", v("docker")),
        ("Etcd:", v("etcd")),
        ("K8s:", v("k8s")),
        ("LastBoot:", m.last_boot().unwrap_or_default()),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$} | {}", clean(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_read_as_godotenv_reads_them() {
        let env = env_file(
            "# written by the installer\nSERIAL=abc123\nexport DOCKER_VERSION=\"24.0.9\"\nNAME='Flatcar'\n\nbroken line\n",
        );
        assert_eq!(env["SERIAL"], "abc123");
        assert_eq!(env["DOCKER_VERSION"], "24.0.9");
        assert_eq!(env["NAME"], "Flatcar");
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn mayus_host_flags_make_a_server_url() {
        assert_eq!(server(None, None, false), None);
        assert_eq!(
            server(Some("10.0.0.1"), None, false).as_deref(),
            Some("https://10.0.0.1:4080")
        );
        assert_eq!(
            server(Some("::1"), Some(4082), true).as_deref(),
            Some("http://[::1]:4082")
        );
    }

    #[test]
    fn versions_go_only_when_asked() {
        let env = env_file("SERIAL=x\nVERSION=3815.2.5\nETCD_VERSION=3.5.12\n");
        assert_eq!(boot_complete_body(&env, false), json!({}));
        assert_eq!(
            boot_complete_body(&env, true),
            json!({"CoreOSVersion": "3815.2.5", "EtcdVersion": "3.5.12"})
        );
    }
}
