//! The IPMI client: Debian's `ipmitool -I lanplus` (what Ironic and MAAS drive), one process
//! per call under a hard timeout. The password reaches it through its environment (`-E`,
//! `IPMI_PASSWORD`), never its command line, so `ps` and logs never show it; the child is
//! killed if the call is dropped or times out.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::secrets::Password;
use super::{PowerError, PowerState};

/// One BMC as ipmitool reaches it.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: String,
    pub port: u16,
    pub user: String,
    pub password: Password,
    pub cipher_suite: u8,
}

/// How ipmitool is run.
#[derive(Debug, Clone)]
pub struct Ipmitool {
    pub program: PathBuf,
    /// the whole call, from spawn to exit; the child is killed after it.
    pub timeout: Duration,
}

/// What a chassis command asks of the BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chassis {
    Status,
    On,
    Off,
    Cycle,
    BootPxe,
}

impl Chassis {
    fn args(self) -> &'static [&'static str] {
        match self {
            Chassis::Status => &["chassis", "power", "status"],
            Chassis::On => &["chassis", "power", "on"],
            Chassis::Off => &["chassis", "power", "off"],
            Chassis::Cycle => &["chassis", "power", "cycle"],
            Chassis::BootPxe => &["chassis", "bootdev", "pxe"],
        }
    }
}

impl Ipmitool {
    /// Runs one chassis command; for [`Chassis::Status`] the state it reports, otherwise the
    /// state the command asked for (on, off; a cycle ends on).
    pub async fn chassis(&self, target: &Target, what: Chassis) -> Result<PowerState, PowerError> {
        let secs = self.timeout.as_secs().max(1);
        // ipmitool's own retries fit inside our timeout: -N seconds per try, -R tries.
        let per_try = (secs / 3).clamp(1, 5);
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(["-I", "lanplus", "-v", "-H", &target.addr, "-p"])
            .arg(target.port.to_string())
            .args(["-U", &target.user, "-E", "-C"])
            .arg(target.cipher_suite.to_string())
            .args(["-N", &per_try.to_string(), "-R", "2"])
            .args(what.args())
            .env("IPMI_PASSWORD", target.password.expose())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| PowerError::Client {
            program: self.program.display().to_string(),
            reason: e.to_string(),
        })?;
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                return Err(PowerError::Client {
                    program: self.program.display().to_string(),
                    reason: e.to_string(),
                })
            }
            // Dropping the future drops the child: kill_on_drop ends it.
            Err(_) => {
                return Err(PowerError::Timeout {
                    addr: target.addr.clone(),
                    secs,
                })
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        interpret(what, out.status.success(), &stdout, &stderr, &target.addr)
    }
}

/// Reads ipmitool's answer. It exits 0 even when a boot parameter was refused, so its error
/// lines count too.
pub fn interpret(
    what: Chassis,
    ok: bool,
    stdout: &str,
    stderr: &str,
    addr: &str,
) -> Result<PowerState, PowerError> {
    let failed_line = stderr
        .lines()
        .map(str::trim)
        .find(|l| l.contains("failed:") || l.starts_with("Error") || l.contains("Unable to"));
    if ok && failed_line.is_none() {
        return match what {
            Chassis::Status => {
                let s = stdout.to_ascii_lowercase();
                if s.contains("chassis power is on") {
                    Ok(PowerState::On)
                } else if s.contains("chassis power is off") {
                    Ok(PowerState::Off)
                } else {
                    Err(PowerError::Bmc {
                        addr: addr.into(),
                        reason: format!("unexpected answer to power status: {}", stdout.trim()),
                    })
                }
            }
            Chassis::On | Chassis::Cycle => Ok(PowerState::On),
            Chassis::Off => Ok(PowerState::Off),
            Chassis::BootPxe => Ok(PowerState::Unknown),
        };
    }
    // No session: why, as far as ipmitool's verbose lines tell.
    if stderr.contains("HMAC is invalid") {
        return Err(PowerError::Auth {
            addr: addr.into(),
            reason: "the BMC refused the password".into(),
        });
    }
    if stderr.contains("unauthorized name") {
        return Err(PowerError::Auth {
            addr: addr.into(),
            reason: "the BMC does not know the user".into(),
        });
    }
    if stderr.contains("Get Auth Capabilities error")
        || stderr.contains("No response")
        || stderr.contains("Error issuing Get Channel Authentication")
    {
        return Err(PowerError::Unreachable {
            addr: addr.into(),
            reason: "no answer on IPMI-over-LAN".into(),
        });
    }
    let reason = failed_line
        .or_else(|| stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("ipmitool failed without a message")
        .to_string();
    Err(PowerError::Bmc {
        addr: addr.into(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_become_states() {
        let on = interpret(Chassis::Status, true, "Chassis Power is on\n", "", "a");
        assert_eq!(on.unwrap(), PowerState::On);
        let off = interpret(Chassis::Status, true, "Chassis Power is off\n", "", "a");
        assert_eq!(off.unwrap(), PowerState::Off);
    }

    #[test]
    fn a_refused_boot_parameter_is_an_error_despite_exit_zero() {
        let e = interpret(
            Chassis::BootPxe,
            true,
            "",
            "Set Chassis Boot Parameter 5 failed: Invalid data field in request\n",
            "10.0.0.9",
        )
        .unwrap_err();
        assert!(e.to_string().contains("Invalid data field"), "{e}");
    }

    #[test]
    fn session_failures_say_why() {
        let silent =
            "Get Auth Capabilities error\nError: Unable to establish IPMI v2 / RMCP+ session\n";
        assert!(matches!(
            interpret(Chassis::Status, false, "", silent, "a"),
            Err(PowerError::Unreachable { .. })
        ));
        let pw = "> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n";
        assert!(matches!(
            interpret(Chassis::Status, false, "", pw, "a"),
            Err(PowerError::Auth { .. })
        ));
    }
}
