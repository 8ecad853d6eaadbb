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

/// `90s`, `5m`, `1h` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; use e.g. 10s, 5m or 1h"))?;
    let per_unit: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("`{s}` has unknown unit `{unit}`; allowed: s, m, h")),
    };
    n.checked_mul(per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` is too long a duration"))
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
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
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
        assert!(parse_duration("5x")
            .unwrap_err()
            .contains("allowed: s, m, h"));
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("not a duration"));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }
}
