//! dnsmasq's configuration: the runtime files mayu owns, rendering `templates/dnsmasq.conf`
//! from the network section of `config.yaml`, and dnsmasq's own self-test (`--test`) with its
//! complaint located on the offending line.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::config::{Config, DhcpMode};

/// The template shipped with mayu, used when the configured templates folder has none.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../templates/dnsmasq.conf");

/// Boot programs in the TFTP root, by client architecture.
pub const BIOS_PROGRAM: &str = "undionly.kpxe";
pub const EFI64_PROGRAM: &str = "ipxe.efi";
pub const EFI64_SNP_PROGRAM: &str = "snponly.efi";
pub const ARM64_PROGRAM: &str = "ipxe-arm64.efi";

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("cannot read dnsmasq template {file}: {source}")]
    ReadTemplate {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("dnsmasq template {file}: {message}")]
    Template { file: String, message: String },
    #[error("network.{key} `{value}` cannot go into dnsmasq's config: {why}")]
    Value {
        key: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("network: {0}")]
    Network(String),
    #[error("cannot write {file}: {source}")]
    Write {
        file: PathBuf,
        source: std::io::Error,
    },
}

/// dnsmasq refused to start or to check a config.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    #[error("dnsmasq binary `{binary}` not found; install Debian's `dnsmasq-base` or set network.dnsmasq")]
    NotFound { binary: PathBuf },
    #[error("cannot run dnsmasq `{binary}`: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "dnsmasq refused {}: {message}{}",
        location(file, line),
        offending(text)
    )]
    Refused {
        message: String,
        file: Option<PathBuf>,
        line: Option<u32>,
        /// the offending line as it stands in the rendered file.
        text: Option<String>,
    },
}

fn location(file: &Option<PathBuf>, line: &Option<u32>) -> String {
    match (file, line) {
        (Some(f), Some(l)) => format!("{}:{l}", f.display()),
        (Some(f), None) => f.display().to_string(),
        _ => "its config".into(),
    }
}

fn offending(text: &Option<String>) -> String {
    text.as_ref()
        .map(|t| format!(": `{t}`"))
        .unwrap_or_default()
}

/// The files dnsmasq reads and writes, all in mayu's runtime folder.
#[derive(Debug, Clone)]
pub struct RuntimeFiles {
    pub folder: PathBuf,
    pub conf: PathBuf,
    pub leases: PathBuf,
    pub pid: PathBuf,
    pub hosts: PathBuf,
}

impl RuntimeFiles {
    pub fn new(runtime: &Path) -> RuntimeFiles {
        RuntimeFiles {
            folder: runtime.to_path_buf(),
            conf: runtime.join("dnsmasq.conf"),
            leases: runtime.join("dnsmasq.leases"),
            pid: runtime.join("dnsmasq.pid"),
            hosts: runtime.join("dnsmasq.hosts"),
        }
    }
}

/// The boot program each client architecture gets, and the URL iPXE gets.
#[derive(Debug, Clone, Serialize)]
pub struct BootPrograms {
    pub bios: String,
    pub efi64: String,
    pub arm64: String,
    pub url: String,
    /// where the boot port serves the same programs for UEFI HTTP boot (ends in `/`).
    pub http: String,
}

impl BootPrograms {
    pub fn of(config: &Config) -> BootPrograms {
        BootPrograms {
            bios: BIOS_PROGRAM.into(),
            efi64: if config.network.uefi_snponly {
                EFI64_SNP_PROGRAM.into()
            } else {
                EFI64_PROGRAM.into()
            },
            arm64: ARM64_PROGRAM.into(),
            url: format!(
                "http://{}:{}/boot.ipxe",
                config.network.address,
                config.http.boot.port()
            ),
            http: format!(
                "http://{}:{}/boot/",
                config.network.address,
                config.http.boot.port()
            ),
        }
    }

    /// `(file, who needs it)` for each program missing from `tftproot`.
    pub fn missing(&self, tftproot: &Path) -> Vec<(String, &'static str)> {
        [
            (&self.bios, "BIOS"),
            (&self.efi64, "UEFI x86-64"),
            (&self.arm64, "arm64"),
        ]
        .into_iter()
        .filter(|(f, _)| !tftproot.join(f.as_str()).is_file())
        .map(|(f, who)| (f.clone(), who))
        .collect()
    }
}

#[derive(Serialize)]
struct Range {
    start: Ipv4Addr,
    end: Ipv4Addr,
}

#[derive(Serialize)]
struct Context {
    config_file: String,
    runtime: String,
    mode: &'static str,
    interface: String,
    address: Ipv4Addr,
    network: Ipv4Addr,
    netmask: Ipv4Addr,
    ranges: Vec<Range>,
    lease_time: String,
    router: Option<Ipv4Addr>,
    dns: Vec<String>,
    ntp: Vec<String>,
    domain: Option<String>,
    known_only: bool,
    ipv6_ra: bool,
    boot: BootPrograms,
    tftproot: String,
    pid_file: String,
    lease_file: String,
    hosts_file: String,
}

/// A value that goes into dnsmasq's line-based syntax must not carry a line break, a comma or
/// a `#`, or it would add options the operator never wrote.
fn plain(key: &'static str, value: &str) -> Result<String, ConfError> {
    let bad = |why| ConfError::Value {
        key,
        value: value.to_string(),
        why,
    };
    if value.is_empty() {
        return Err(bad("it is empty"));
    }
    if value
        .chars()
        .any(|c| c.is_control() || c == ',' || c == '#' || c == '"')
    {
        return Err(bad("it holds a line break, `,`, `#` or `\"`"));
    }
    Ok(value.to_string())
}

fn path_value(key: &'static str, p: &Path) -> Result<String, ConfError> {
    let s = p.to_str().ok_or_else(|| ConfError::Value {
        key,
        value: p.display().to_string(),
        why: "it is not UTF-8",
    })?;
    plain(key, s)
}

/// Renders dnsmasq's config for `config`, from the templates folder's `dnsmasq.conf` if it has
/// one, else from the template shipped with mayu.
pub fn render_conf(config: &Config) -> Result<String, ConfError> {
    let file = config.templates.join("dnsmasq.conf");
    let (name, source) = if file.is_file() {
        let text = std::fs::read_to_string(&file).map_err(|source| ConfError::ReadTemplate {
            file: file.clone(),
            source,
        })?;
        (file.display().to_string(), text)
    } else {
        (
            "built-in dnsmasq.conf".to_string(),
            DEFAULT_TEMPLATE.to_string(),
        )
    };
    render_with(config, &name, &source)
}

/// Renders `source` (a Tera template named `name` in errors) for `config`.
pub fn render_with(config: &Config, name: &str, source: &str) -> Result<String, ConfError> {
    let net = &config.network;
    let subnet = net.subnet().map_err(ConfError::Network)?;
    let files = RuntimeFiles::new(&config.runtime);
    let ctx = Context {
        config_file: config.file.display().to_string(),
        runtime: files.folder.display().to_string(),
        mode: match net.dhcp.mode {
            DhcpMode::Full => "full",
            DhcpMode::Proxy => "proxy",
            DhcpMode::Off => "off",
        },
        interface: plain("interface", &net.interface)?,
        ipv6_ra: net.ipv6_ra,
        address: net.address,
        network: subnet.network(),
        netmask: subnet.netmask(),
        ranges: net
            .ranges()
            .into_iter()
            .map(|(start, end)| Range { start, end })
            .collect(),
        lease_time: net.dhcp.lease_time.dnsmasq(),
        router: net.dhcp.router,
        dns: net.dhcp.dns.iter().map(Ipv4Addr::to_string).collect(),
        ntp: net.ntp.iter().map(Ipv4Addr::to_string).collect(),
        domain: net
            .domain
            .as_deref()
            .map(|d| plain("domain", d))
            .transpose()?,
        known_only: net.dhcp.known_only,
        boot: BootPrograms::of(config),
        tftproot: path_value("tftproot", &config.tftproot)?,
        pid_file: path_value("runtime", &files.pid)?,
        lease_file: path_value("runtime", &files.leases)?,
        hosts_file: path_value("runtime", &files.hosts)?,
    };
    let ctx = tera::Context::from_serialize(&ctx).map_err(|e| ConfError::Template {
        file: name.to_string(),
        message: error_chain(&e),
    })?;
    let mut tera = tera::Tera::default();
    tera.autoescape_on(Vec::new());
    tera.add_raw_template(name, source)
        .map_err(|e| ConfError::Template {
            file: name.to_string(),
            message: error_chain(&e),
        })?;
    tera.render(name, &ctx).map_err(|e| ConfError::Template {
        file: name.to_string(),
        message: error_chain(&e),
    })
}

/// Tera puts the useful part (which variable, which line) in the error's sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// The dnsmasq binary: `network.dnsmasq` if set, else `dnsmasq` from PATH.
pub fn binary(config: &Config) -> PathBuf {
    config
        .network
        .dnsmasq
        .clone()
        .unwrap_or_else(|| PathBuf::from("dnsmasq"))
}

/// Runs `dnsmasq --test` on `conf` (under `wrapper`, e.g. `ip netns exec NS`). On refusal the
/// error names the file, the line and the line's text.
pub fn self_test(binary: &Path, wrapper: &[OsString], conf: &Path) -> Result<(), SelfTestError> {
    let (program, args) = test_argv(binary, wrapper, conf);
    let out = Command::new(&program).args(&args).output();
    judge(out, &program, conf)
}

/// [`self_test`] for the supervisor's async task: the child runs under `tokio::process`.
pub async fn self_test_async(
    binary: &Path,
    wrapper: &[OsString],
    conf: &Path,
) -> Result<(), SelfTestError> {
    let (program, args) = test_argv(binary, wrapper, conf);
    let out = tokio::process::Command::new(&program)
        .args(&args)
        .kill_on_drop(true)
        .output()
        .await;
    judge(out, &program, conf)
}

/// `[wrapper…] dnsmasq --test --conf-file=CONF`, as program and arguments.
fn test_argv(binary: &Path, wrapper: &[OsString], conf: &Path) -> (OsString, Vec<OsString>) {
    let mut argv: Vec<OsString> = wrapper.to_vec();
    argv.push(binary.as_os_str().to_os_string());
    argv.push("--test".into());
    argv.push(format!("--conf-file={}", conf.display()).into());
    let program = argv.remove(0);
    (program, argv)
}

/// What `dnsmasq --test` said, as a located error when it refused the file.
fn judge(
    out: std::io::Result<std::process::Output>,
    program: &OsString,
    conf: &Path,
) -> Result<(), SelfTestError> {
    let out = out.map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SelfTestError::NotFound {
                binary: PathBuf::from(program),
            }
        } else {
            SelfTestError::Spawn {
                binary: PathBuf::from(program),
                source,
            }
        }
    })?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let message = text
        .lines()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .map(|l| l.strip_prefix("dnsmasq: ").unwrap_or(l).to_string())
        .unwrap_or_else(|| format!("exit status {}", out.status));
    Err(locate(&message, conf))
}

/// Checks `config` the way the supervisor does before a start, without touching the runtime
/// folder: renders it into a temporary file and runs `dnsmasq --test` on it. For `mayu check`.
pub fn check(config: &Config) -> Result<(), CheckError> {
    let text = render_conf(config)?;
    let tmp = std::env::temp_dir().join(format!(
        "mayu-dnsmasq-check-{}-{}.conf",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    ));
    std::fs::write(&tmp, &text).map_err(|source| ConfError::Write {
        file: tmp.clone(),
        source,
    })?;
    let res = self_test(&binary(config), &[], &tmp);
    let _ = std::fs::remove_file(&tmp);
    Ok(res?)
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Conf(#[from] ConfError),
    #[error(transparent)]
    SelfTest(#[from] SelfTestError),
}

/// `bad option at line 2 of /run/mayu/dnsmasq.conf` → the file, the line and its text.
fn locate(message: &str, conf: &Path) -> SelfTestError {
    let located = message.rsplit_once(" at line ").and_then(|(what, rest)| {
        let (line, file) = rest.split_once(" of ")?;
        let line: u32 = line.trim().parse().ok()?;
        Some((what.to_string(), line, PathBuf::from(file.trim())))
    });
    match located {
        Some((what, line, file)) => {
            let text = std::fs::read_to_string(&file).ok().and_then(|t| {
                t.lines()
                    .nth(line.saturating_sub(1) as usize)
                    .map(str::to_string)
            });
            SelfTestError::Refused {
                message: what,
                file: Some(file),
                line: Some(line),
                text,
            }
        }
        None => SelfTestError::Refused {
            message: message.to_string(),
            file: Some(conf.to_path_buf()),
            line: None,
            text: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(network: &str) -> Config {
        let text = format!(
            "network:\n{network}\nhttp: {{ boot: 0.0.0.0:4081 }}\nassignment: auto\ntftproot: /srv/tftp\nruntime: /run/mayu\ntemplates: /nonexistent-templates\n"
        );
        Config::parse(Path::new("/etc/mayu/config.yaml"), &text).expect("test fixture")
    }

    const FULL: &str = "  interface: mt0\n  address: 10.77.0.1\n  dhcp:\n    mode: full\n    range: [10.77.0.100, 10.77.0.200]\n    lease_time: 1h\n    router: 10.77.0.1\n    dns: [10.77.0.1, 10.77.0.2]\n  ntp: [10.77.0.3]\n  domain: lab";

    fn lines(text: &str) -> Vec<&str> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    }

    #[test]
    fn full_mode_has_range_options_and_chainloading() {
        let text = render_conf(&config(FULL)).expect("test fixture");
        let l = lines(&text);
        for want in [
            "port=0",
            "interface=mt0",
            "bind-interfaces",
            "dhcp-range=10.77.0.100,10.77.0.200,255.255.255.0,3600s",
            "dhcp-option=option:router,10.77.0.1",
            "dhcp-option=option:dns-server,10.77.0.1,10.77.0.2",
            "dhcp-option=option:ntp-server,10.77.0.3",
            "domain=lab",
            "dhcp-leasefile=/run/mayu/dnsmasq.leases",
            "dhcp-hostsfile=/run/mayu/dnsmasq.hosts",
            "pid-file=/run/mayu/dnsmasq.pid",
            "dhcp-match=set:ipxe,175",
            "dhcp-userclass=set:ipxe,iPXE",
            "dhcp-boot=tag:!ipxe,tag:!httpboot,tag:efi64,ipxe.efi,,10.77.0.1",
            "dhcp-boot=tag:!ipxe,tag:!httpboot,tag:arm64,ipxe-arm64.efi,,10.77.0.1",
            "dhcp-boot=tag:!ipxe,tag:!httpboot,tag:!efi64,tag:!arm64,undionly.kpxe,,10.77.0.1",
            "dhcp-boot=tag:ipxe,http://10.77.0.1:4081/boot.ipxe",
            // UEFI HTTP boot: the vendor class echoed, iPXE from the boot port, no TFTP.
            "dhcp-vendorclass=set:httpboot,HTTPClient",
            "dhcp-match=set:efi64,option:client-arch,16",
            "dhcp-match=set:arm64,option:client-arch,19",
            "dhcp-option-force=tag:httpboot,option:vendor-class,HTTPClient",
            "dhcp-boot=tag:!ipxe,tag:httpboot,tag:efi64,http://10.77.0.1:4081/boot/ipxe.efi",
            "dhcp-boot=tag:!ipxe,tag:httpboot,tag:arm64,http://10.77.0.1:4081/boot/ipxe-arm64.efi",
            "tftp-root=/srv/tftp",
        ] {
            assert!(l.contains(&want), "missing `{want}` in\n{text}");
        }
        assert!(!text.contains("dhcp-ignore"), "{text}");
        assert!(!text.contains("proxy"), "{text}");
    }

    #[test]
    fn snponly_and_known_only() {
        let net = FULL
            .replace("  domain: lab", "  domain: lab\n  uefi_snponly: true")
            .replace(
                "    lease_time: 1h",
                "    lease_time: 1h\n    known_only: true",
            );
        let text = render_conf(&config(&net)).expect("test fixture");
        let l = lines(&text);
        assert!(l.contains(&"dhcp-boot=tag:!ipxe,tag:!httpboot,tag:efi64,snponly.efi,,10.77.0.1"));
        assert!(l.contains(
            &"dhcp-boot=tag:!ipxe,tag:httpboot,tag:efi64,http://10.77.0.1:4081/boot/snponly.efi"
        ));
        assert!(l.contains(&"dhcp-ignore=tag:!known"), "{text}");
    }

    #[test]
    fn proxy_mode_serves_boot_options_only() {
        let net = "  interface: mt0\n  address: 10.77.0.1\n  prefix: 24\n  dhcp:\n    mode: proxy";
        let text = render_conf(&config(net)).expect("test fixture");
        let l = lines(&text);
        assert!(
            l.contains(&"dhcp-range=10.77.0.0,proxy,255.255.255.0"),
            "{text}"
        );
        assert!(l.contains(&"pxe-service=tag:!ipxe,x86PC,\"mayu: iPXE\",undionly.kpxe"));
        assert!(l.contains(&"pxe-service=tag:!ipxe,X86-64_EFI,\"mayu: iPXE\",ipxe.efi"));
        assert!(l.contains(&"dhcp-boot=tag:ipxe,http://10.77.0.1:4081/boot.ipxe"));
        assert!(!text.contains("10.77.0.100"), "{text}");
        assert!(!text.contains("option:router"), "{text}");
    }

    #[test]
    fn off_mode_has_no_dhcp() {
        let net = "  interface: mt0\n  address: 10.77.0.1\n  dhcp:\n    mode: off";
        let text = render_conf(&config(net)).expect("test fixture");
        assert!(!text.contains("dhcp-range"), "{text}");
        assert!(!text.contains("dhcp-boot"), "{text}");
    }

    #[test]
    fn values_that_would_inject_options_are_refused() {
        let net = FULL.replace("domain: lab", "domain: \"lab\\nenable-ra\"");
        let err = render_conf(&config(&net)).expect_err("should fail");
        assert!(err.to_string().contains("network.domain"), "{err}");
    }

    #[test]
    fn a_template_error_names_the_template() {
        let err =
            render_with(&config(FULL), "mine.conf", "port={{ nope }}\n").expect_err("should fail");
        let msg = err.to_string();
        assert!(msg.contains("mine.conf"), "{msg}");
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn locate_reads_the_offending_line() {
        let dir = std::env::temp_dir().join(format!("mayu-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test fixture");
        let conf = dir.join("dnsmasq.conf");
        std::fs::write(&conf, "port=0\nbogus-option=1\n").expect("test fixture");
        let msg = format!("bad option at line 2 of {}", conf.display());
        let e = locate(&msg, &conf);
        let shown = e.to_string();
        assert!(shown.contains(&format!("{}:2", conf.display())), "{shown}");
        assert!(shown.contains("bad option"), "{shown}");
        assert!(shown.contains("`bogus-option=1`"), "{shown}");
        std::fs::remove_dir_all(&dir).expect("test fixture");
    }
}
