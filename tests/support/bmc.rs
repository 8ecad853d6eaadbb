//! A lab machine's BMC: OpenIPMI's `ipmi_sim` (Debian `openipmi`) speaking IPMI-over-LAN on
//! an address the test chooses (inside its network namespace), joined to a QEMU machine through
//! QEMU's `ipmi-bmc-extern` device. Power on runs the machine's start script (`startcmd`), so
//! the VM process exists exactly while the chassis is on; power off asks QEMU over that link
//! (the guest powers off, QEMU exits), and a TERM follows if it does not; a cycle is an off and
//! an on a second later (a new QEMU process); a reset resets the running VM in place.
//!
//! Without a VM (`vm: None`) the BMC still answers and keeps its own power state: power on
//! runs a placeholder process, so API tests need no QEMU.
//!
//! `ipmi_sim` answers `Set System Boot Options` only through a chassis-control program, so
//! `chassis bootdev pxe` is refused here ("invalid data field"); lab machines boot from the
//! network first anyway.
//!
//! Used by `tests/qemu_ipmi.rs` and `ui/tests/qemu_power.rs`; `scripts/lab.sh` writes the same configuration in shell.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The IPMI user every lab BMC has (admin privilege).
pub const USER: &str = "admin";
/// How long a started `ipmi_sim` may take to answer on its LAN port.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// What one BMC is.
#[derive(Debug, Clone)]
pub struct BmcSpec {
    /// the BMC's name (its state folder, its log).
    pub name: String,
    /// IPMI-over-LAN: UDP address and port (623 is the standard port).
    pub lan_addr: String,
    pub lan_port: u16,
    /// where `ipmi_sim` listens for the VM's `ipmi-bmc-extern` link (TCP, loopback).
    pub vm_port: u16,
    pub password: String,
    /// the machine behind the BMC: QEMU's full argument list (without the IPMI devices, which
    /// [`BmcSpec::qemu_devices`] adds); `None` for a BMC without a machine.
    pub vm: Option<Vec<String>>,
    /// start the machine with the BMC (`startnow`), as a server with power restored does.
    pub power_on_at_start: bool,
}

impl BmcSpec {
    pub fn new(name: &str, lan_addr: &str, lan_port: u16, vm_port: u16) -> BmcSpec {
        BmcSpec {
            name: name.to_string(),
            lan_addr: lan_addr.to_string(),
            lan_port,
            vm_port,
            password: format!("pw-{name}-{}", std::process::id()),
            vm: None,
            power_on_at_start: false,
        }
    }

    /// QEMU's side of the BMC link: a socket to `ipmi_sim` (reconnecting, so either may start
    /// first), the external BMC and a KCS system interface for the guest.
    pub fn qemu_devices(&self) -> Vec<String> {
        vec![
            "-chardev".into(),
            format!(
                "socket,id=ipmi0,host=127.0.0.1,port={},reconnect=10",
                self.vm_port
            ),
            "-device".into(),
            "ipmi-bmc-extern,id=bmc0,chardev=ipmi0".into(),
            "-device".into(),
            "isa-ipmi-kcs,bmc=bmc0".into(),
        ]
    }
}

/// Writes a power secrets file (mayu refuses any mode but 0600).
pub fn write_secrets(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

impl BmcSpec {
    /// A secrets file's text with this BMC's credentials as everyone's default.
    pub fn default_secrets(&self) -> String {
        format!(
            "default: {{ user: {USER}, password: \"{}\" }}\n",
            self.password
        )
    }
}

/// A running `ipmi_sim`. Dropping it stops the machine (if on) and the simulator.
pub struct Bmc {
    pub spec: BmcSpec,
    dir: PathBuf,
    child: Child,
}

/// Single-quoted for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `lan.conf` (see `man 5 ipmi_lan`) for `spec`, with the start script at `start`.
pub fn lan_conf(spec: &BmcSpec, start: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "name \"{}\"", spec.name);
    s.push_str("set_working_mc 0x20\n");
    s.push_str("  startlan 1\n");
    let _ = writeln!(s, "    addr {} {}", spec.lan_addr, spec.lan_port);
    s.push_str("    priv_limit admin\n");
    // RMCP+ (ipmitool -I lanplus) authenticates with the user's key whatever these say; they
    // only govern IPMI 1.5 sessions, which keep to MD5.
    for level in ["callback", "user", "operator", "admin"] {
        let _ = writeln!(s, "    allowed_auths_{level} md5");
    }
    s.push_str("    guid a123456789abcdefa123456789abcdef\n");
    s.push_str("  endlan\n");
    let _ = writeln!(s, "  serial 15 127.0.0.1 {} codec VM", spec.vm_port);
    let _ = writeln!(s, "  startcmd \"{}\"", start.display());
    let _ = writeln!(s, "  startnow {}", spec.power_on_at_start);
    // A guest that ignores the power-off request is stopped with TERM after 10 s, KILL 5 s on.
    s.push_str("  poweroff_wait 10\n");
    s.push_str("  kill_wait 5\n");
    let _ = writeln!(
        s,
        "  user 2 true \"{USER}\" \"{}\" admin 10 md5",
        spec.password
    );
    s
}

/// The emulator commands: one BMC at IPMB 0x20 (see `man 5 ipmi_sim_cmd`).
pub const EMU: &str = "mc_setbmc 0x20\n\
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
sel_enable 0x20 1000 0x0a\n\
mc_enable 0x20\n";

impl Bmc {
    /// Writes the BMC's files under `dir/<name>/` and starts `ipmi_sim` (inside network
    /// namespace `netns` when given; `ip netns exec` execs it, so the pid is its own), then
    /// waits until it answers `chassis power status` over the LAN.
    pub fn start(dir: &Path, spec: BmcSpec, netns: Option<&str>) -> Result<Bmc, String> {
        let dir = dir.join(&spec.name);
        fs::create_dir_all(dir.join("state")).map_err(|e| e.to_string())?;
        let start = dir.join("start.sh");
        let mut script = String::from("#!/bin/sh\n");
        match &spec.vm {
            Some(args) => {
                // exec: the process ipmi_sim watches is QEMU itself.
                let _ = write!(script, "exec qemu-system-x86_64");
                for a in args.iter().chain(spec.qemu_devices().iter()) {
                    let _ = write!(script, " {}", sh_quote(a));
                }
                let pidfile = dir.join("vm.pid");
                let _ = writeln!(
                    script,
                    " -pidfile {} >>{} 2>&1",
                    sh_quote(&pidfile.to_string_lossy()),
                    sh_quote(&dir.join("qemu.log").to_string_lossy())
                );
            }
            None => {
                // A stand-in for a machine: "on" while it runs.
                let _ = writeln!(
                    script,
                    "echo $$ > {}\nexec sleep 100000",
                    sh_quote(&dir.join("vm.pid").to_string_lossy())
                );
            }
        }
        fs::write(&start, script).map_err(|e| e.to_string())?;
        fs::set_permissions(&start, fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let conf = dir.join("lan.conf");
        fs::write(&conf, lan_conf(&spec, &start)).map_err(|e| e.to_string())?;
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
        let emu = dir.join("bmc.emu");
        fs::write(&emu, EMU).map_err(|e| e.to_string())?;
        let pw = dir.join("password");
        fs::write(&pw, &spec.password).map_err(|e| e.to_string())?;
        fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;

        let log = fs::File::create(dir.join("ipmi_sim.log")).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "ipmi_sim"]);
                c
            }
            None => Command::new("ipmi_sim"),
        };
        cmd.arg("-c")
            .arg(&conf)
            .arg("-f")
            .arg(&emu)
            .arg("-s")
            .arg(dir.join("state"))
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        // A test killed outright runs no Drop: its BMC must not outlive it.
        // SAFETY: prctl(2) only, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start ipmi_sim: {e}"))?;
        let mut bmc = Bmc { spec, dir, child };
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            if let Ok(Some(status)) = bmc.child.try_wait() {
                return Err(format!("ipmi_sim exited ({status}): {}", bmc.log()));
            }
            match bmc.ipmitool(netns, &["chassis", "power", "status"]) {
                Ok(_) => return Ok(bmc),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("ipmi_sim never answered: {e}\n{}", bmc.log()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the BMC password (mode 0600).
    pub fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("ipmi_sim.log")).unwrap_or_default()
    }

    /// `ipmitool -I lanplus` against this BMC (from inside `netns` when given): its stdout,
    /// or stdout and stderr on failure. Cipher suite 3 (SHA1/AES): ipmi_sim does not answer
    /// ipmitool's cipher-suite query.
    pub fn ipmitool(&self, netns: Option<&str>, args: &[&str]) -> Result<String, String> {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "ipmitool"]);
                c
            }
            None => Command::new("ipmitool"),
        };
        cmd.args(["-I", "lanplus", "-C", "3", "-N", "1", "-R", "2", "-H"])
            .arg(&self.spec.lan_addr)
            .arg("-p")
            .arg(self.spec.lan_port.to_string())
            .args(["-U", USER, "-f"])
            .arg(self.password_file())
            .args(args);
        let out = cmd.output().map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            ))
        }
    }

    /// The machine's process id while it runs (the pid file QEMU or the stand-in wrote, and
    /// the process still alive).
    pub fn vm_pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.dir.join("vm.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let ours = cmdline.contains("qemu-system") || cmdline.contains("sleep");
        // A zombie has an empty cmdline; so does a reused pid that is not ours.
        ours.then_some(pid)
    }

    /// Waits (up to `within`) until `check` holds for the VM's pid.
    pub fn wait_vm(&self, within: Duration, check: impl Fn(Option<i32>) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if check(self.vm_pid()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        if let Some(pid) = self.vm_pid() {
            // SAFETY: kill(2) on the machine this BMC started (checked by its command line).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
