//! `power:` in config.yaml: where the BMC credentials are, how long one BMC call may take, how
//! often and how widely the poller asks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Power control over IPMI. Present in config.yaml only when an operator wants it:
///
/// ```yaml
/// power:
///   secrets: bmc-secrets.yaml   # mode 0600; never in git, logs, events or the console
///   port: 623                   # IPMI-over-LAN UDP port (a credential entry may override it)
///   timeout: 10s                # one ipmitool call, killed after this
///   poll: 30s                   # every machine's power state refreshed this often; 0s: never
///   concurrency: 8              # BMCs asked at once by the poller
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerSettings {
    /// the credentials file (relative paths are resolved against the config file's folder
    /// by whoever loads the config).
    pub secrets: PathBuf,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_poll", deserialize_with = "duration")]
    pub poll: Duration,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// the ipmitool binary (`ipmitool` on PATH unless set).
    #[serde(default = "default_ipmitool")]
    pub ipmitool: PathBuf,
}

impl PowerSettings {
    /// Defaults around a secrets file.
    pub fn new(secrets: PathBuf) -> PowerSettings {
        PowerSettings {
            secrets,
            port: default_port(),
            timeout: default_timeout(),
            poll: default_poll(),
            concurrency: default_concurrency(),
            ipmitool: default_ipmitool(),
        }
    }
}

fn default_port() -> u16 {
    623
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_poll() -> Duration {
    Duration::from_secs(30)
}

fn default_concurrency() -> usize {
    8
}

fn default_ipmitool() -> PathBuf {
    PathBuf::from("ipmitool")
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(n) => Ok(Duration::from_secs(n)),
        Raw::Text(t) => crate::config::parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_is_left_out() {
        let s: PowerSettings = serde_saphyr::from_str("secrets: s.yaml\ntimeout: 5s\n").unwrap();
        assert_eq!(s.port, 623);
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.poll, Duration::from_secs(30));
        assert_eq!(s.concurrency, 8);
    }

    #[test]
    fn bad_durations_say_what_is_allowed() {
        let bad = |t: &str| {
            serde_saphyr::from_str::<PowerSettings>(&format!("secrets: s.yaml\ntimeout: {t}\n"))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("5x").contains("allowed: s, m, h"), "{}", bad("5x"));
        assert!(bad("soon").contains("not a duration"), "{}", bad("soon"));
        let s: PowerSettings = serde_saphyr::from_str("secrets: s.yaml\ntimeout: 2m\n").unwrap();
        assert_eq!(s.timeout, Duration::from_secs(120));
    }
}
