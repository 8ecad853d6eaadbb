//! A pure parser of dnsmasq's log lines (`--log-facility=-` with `--log-dhcp`) into typed items.
//!
//! With `--log-dhcp` dnsmasq logs one DHCP transaction as a burst of lines that share the
//! client's transaction id (`xid`): the client's vendor class and name *before* the message
//! line, the chosen boot file *after* it. The parser therefore keeps the message line pending
//! until its transaction's burst is over (a line of another transaction, a line without an xid,
//! or [`LogParser::flush`] after a quiet moment) and then yields one [`DhcpLog`] with all of it.

use std::net::Ipv4Addr;

use crate::machine::Mac;

/// What the PXE client says it is (DHCP option 93, or its `PXEClient:Arch:NNNNN` /
/// `HTTPClient:Arch:NNNNN` vendor class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientArch {
    Bios,
    Efi64,
    Arm64,
    /// UEFI x86-64 HTTP boot (arch 16): the firmware fetches its boot program over HTTP.
    Efi64Http,
    /// UEFI arm64 HTTP boot (arch 19).
    Arm64Http,
    Other(u16),
}

impl ClientArch {
    pub fn from_code(code: u16) -> ClientArch {
        match code {
            0 => ClientArch::Bios,
            7 | 9 => ClientArch::Efi64,
            11 => ClientArch::Arm64,
            16 => ClientArch::Efi64Http,
            19 => ClientArch::Arm64Http,
            n => ClientArch::Other(n),
        }
    }

    pub fn as_str(&self) -> String {
        match self {
            ClientArch::Bios => "bios".into(),
            ClientArch::Efi64 => "efi64".into(),
            ClientArch::Arm64 => "arm64".into(),
            ClientArch::Efi64Http => "efi64 http boot".into(),
            ClientArch::Arm64Http => "arm64 http boot".into(),
            ClientArch::Other(n) => format!("arch {n}"),
        }
    }
}

/// One DHCP message dnsmasq received or sent, with its transaction's context.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DhcpLog {
    /// `DHCPDISCOVER`, `DHCPOFFER`, `DHCPREQUEST`, `DHCPACK`, `DHCPNAK`, `DHCPRELEASE`,
    /// `DHCPINFORM`, `DHCPDECLINE` or `PXE` (proxy mode), as dnsmasq spells it.
    pub message: String,
    pub interface: String,
    pub mac: Option<Mac>,
    pub ip: Option<Ipv4Addr>,
    /// the hostname dnsmasq logged on the message line, else the one the client sent.
    pub hostname: Option<String>,
    pub arch: Option<ClientArch>,
    pub vendor_class: Option<String>,
    pub user_class: Option<String>,
    /// the boot file (or iPXE URL) dnsmasq chose for this reply.
    pub boot_file: Option<String>,
    /// dnsmasq's own remark after the MAC, e.g. `no address available` or `ignored`.
    pub note: Option<String>,
    /// the transaction's tags, e.g. `known`, `ipxe`, `efi64`.
    pub tags: Vec<String>,
}

impl DhcpLog {
    /// The part of the event that has no field of its own, for the console and the API.
    pub fn detail(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = &self.arch {
            parts.push(a.as_str());
        }
        if let Some(b) = &self.boot_file {
            parts.push(format!("boot {b}"));
        }
        if let Some(v) = &self.vendor_class {
            parts.push(format!("vendor {v}"));
        }
        if let Some(u) = &self.user_class {
            parts.push(format!("user class {u}"));
        }
        if let Some(n) = &self.note {
            parts.push(n.clone());
        }
        if !self.interface.is_empty() {
            parts.push(format!("on {}", self.interface));
        }
        parts.join(", ")
    }
}

/// A TFTP transfer as dnsmasq reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpLog {
    /// the path dnsmasq logged (absolute, inside the TFTP root).
    pub file: String,
    pub client: String,
    pub ok: bool,
    /// why it failed, empty when it did not.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogItem {
    /// dnsmasq is up: its sockets are bound and its signal handlers are set.
    Started {
        version: String,
    },
    Dhcp(DhcpLog),
    Tftp(TftpLog),
    /// dnsmasq (re-)read a hosts or options file, at start and after SIGHUP.
    FileRead {
        file: String,
    },
    /// a line that explains why dnsmasq refuses to run (it exits right after).
    Fatal(String),
    /// a complaint worth the operator's attention that does not stop dnsmasq.
    Warning(String),
}

/// Where a line came from: `dnsmasq[pid]`, `dnsmasq-dhcp[pid]`, `dnsmasq-tftp[pid]`, or the
/// bare `dnsmasq:` prefix of messages printed before logging is set up (fatal ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Main,
    Dhcp,
    Tftp,
    Early,
}

fn split_source(line: &str) -> Option<(Source, &str)> {
    let (head, rest) = line.split_once(": ")?;
    let name = head.split('[').next().unwrap_or(head);
    let has_pid = head.ends_with(']') && head.contains('[');
    let source = match (name, has_pid) {
        ("dnsmasq", true) => Source::Main,
        ("dnsmasq-dhcp", true) => Source::Dhcp,
        ("dnsmasq-tftp", true) => Source::Tftp,
        ("dnsmasq", false) => Source::Early,
        _ => return None,
    };
    Some((source, rest))
}

const MESSAGES: &[&str] = &[
    "DHCPDISCOVER",
    "DHCPOFFER",
    "DHCPREQUEST",
    "DHCPACK",
    "DHCPNAK",
    "DHCPRELEASE",
    "DHCPINFORM",
    "DHCPDECLINE",
    "PXE",
];

/// `DHCPACK(mt0) 10.77.0.150 0e:3e:7a:6b:fc:11 fixed1` → the message without context.
fn parse_message(text: &str) -> Option<DhcpLog> {
    let (name, rest) = text.split_once('(')?;
    if !MESSAGES.contains(&name) {
        return None;
    }
    let (interface, rest) = rest.split_once(')')?;
    let mut words = rest.split_whitespace().peekable();
    let mut log = DhcpLog {
        message: name.to_string(),
        interface: interface.to_string(),
        ..DhcpLog::default()
    };
    if let Some(ip) = words.peek().and_then(|w| w.parse::<Ipv4Addr>().ok()) {
        log.ip = Some(ip);
        words.next();
    }
    if let Some(mac) = words.peek().and_then(|w| parse_mac(w)) {
        log.mac = Some(mac);
        words.next();
    }
    let tail: Vec<&str> = words.collect();
    if !tail.is_empty() {
        let tail = tail.join(" ");
        // After an ACK dnsmasq names the host; after anything else it explains itself.
        let is_name = log.message == "DHCPACK"
            && !tail.contains(' ')
            && tail
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if is_name {
            log.hostname = Some(tail);
        } else {
            log.note = Some(tail);
        }
    }
    Some(log)
}

/// Only Ethernet hardware addresses become a [`Mac`]; dnsmasq prints others (client ids,
/// InfiniBand) with a type prefix, which do not parse and are left out.
fn parse_mac(word: &str) -> Option<Mac> {
    if word.len() == 17 && word.matches(':').count() == 5 {
        word.parse().ok()
    } else {
        None
    }
}

/// `PXEClient:Arch:00007:UNDI:003016` (or UEFI HTTP boot's `HTTPClient:Arch:00016:…`) carries
/// the architecture even where option 93 is not logged on its own.
fn arch_from_vendor(vendor: &str) -> Option<ClientArch> {
    let rest = vendor
        .strip_prefix("PXEClient:Arch:")
        .or_else(|| vendor.strip_prefix("HTTPClient:Arch:"))?;
    let code = rest.split(':').next()?;
    code.parse::<u16>().ok().map(ClientArch::from_code)
}

fn arch_from_tags(tags: &[String]) -> Option<ClientArch> {
    tags.iter().find_map(|t| match t.as_str() {
        "efi64" => Some(ClientArch::Efi64),
        "arm64" => Some(ClientArch::Arm64),
        "bios" => Some(ClientArch::Bios),
        _ => None,
    })
}

/// What one transaction has said so far, before and after its message lines.
#[derive(Debug, Default)]
struct Context {
    xid: String,
    vendor_class: Option<String>,
    user_class: Option<String>,
    client_name: Option<String>,
    tags: Vec<String>,
    arch: Option<ClientArch>,
}

/// Turns dnsmasq's output, line by line, into [`LogItem`]s. Keep one per child process.
#[derive(Debug, Default)]
pub struct LogParser {
    ctx: Context,
    pending: Option<DhcpLog>,
}

impl LogParser {
    pub fn new() -> LogParser {
        LogParser::default()
    }

    /// True while a DHCP message waits for the rest of its transaction; call
    /// [`flush`](Self::flush) when no line has come for a moment.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Yields the pending DHCP message, if any.
    pub fn flush(&mut self) -> Option<LogItem> {
        self.pending.take().map(LogItem::Dhcp)
    }

    /// Feeds one line (without its newline); returns what it completes.
    pub fn feed(&mut self, line: &str) -> Vec<LogItem> {
        let mut out = Vec::new();
        let line = line.trim_end();
        let Some((source, text)) = split_source(line) else {
            return out;
        };
        match source {
            Source::Dhcp => self.feed_dhcp(text, &mut out),
            Source::Tftp => {
                out.extend(self.flush());
                out.extend(parse_tftp(text));
            }
            Source::Main => {
                out.extend(self.flush());
                if let Some(rest) = text.strip_prefix("started, version ") {
                    let version = rest.split_whitespace().next().unwrap_or("").to_string();
                    out.push(LogItem::Started { version });
                } else if text == "FAILED to start up" {
                    // The reason came on the line before; this one adds nothing.
                } else if let Some(reason) = main_problem(text) {
                    out.push(reason);
                }
            }
            Source::Early => {
                out.extend(self.flush());
                if !text.starts_with("syntax check OK") {
                    out.push(LogItem::Fatal(text.to_string()));
                }
            }
        }
        out
    }

    fn feed_dhcp(&mut self, text: &str, out: &mut Vec<LogItem>) {
        // Transaction lines start with the xid, a decimal number.
        let (xid, body) = match text.split_once(' ') {
            Some((x, b)) if !x.is_empty() && x.chars().all(|c| c.is_ascii_digit()) => (x, b),
            _ => {
                out.extend(self.flush());
                self.ctx = Context::default();
                if let Some(file) = text.strip_prefix("read ") {
                    out.push(LogItem::FileRead {
                        file: file.trim().to_string(),
                    });
                } else if let Some(log) = parse_message(text) {
                    // Without --log-dhcp there is no xid and no context; still a message.
                    out.push(LogItem::Dhcp(log));
                } else if let Some(w) = dhcp_problem(text) {
                    out.push(w);
                }
                return;
            }
        };
        if self.ctx.xid != xid {
            out.extend(self.flush());
            self.ctx = Context {
                xid: xid.to_string(),
                ..Context::default()
            };
        }
        if let Some(v) = body.strip_prefix("vendor class: ") {
            let v = v.trim().to_string();
            if let Some(a) = arch_from_vendor(&v) {
                self.ctx.arch = Some(a);
            }
            self.ctx.vendor_class = Some(v);
        } else if let Some(u) = body.strip_prefix("user class: ") {
            self.ctx.user_class = Some(u.trim().to_string());
        } else if let Some(n) = body.strip_prefix("client provides name: ") {
            self.ctx.client_name = Some(n.trim().to_string());
        } else if let Some(t) = body.strip_prefix("tags: ") {
            self.ctx.tags = t
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            // The vendor class is more precise (it tells HTTP boot from PXE); tags fill in.
            if self.ctx.arch.is_none() {
                self.ctx.arch = arch_from_tags(&self.ctx.tags);
            }
            if let Some(p) = &mut self.pending {
                p.tags = self.ctx.tags.clone();
                if p.arch.is_none() {
                    p.arch = self.ctx.arch;
                }
            }
        } else if let Some(b) = body.strip_prefix("bootfile name: ") {
            if let Some(p) = &mut self.pending {
                p.boot_file = Some(b.trim().to_string());
            }
        } else if let Some(b) = sent_boot_file(body) {
            // A client that lists option 67 in its request gets the boot file (an HTTP boot URL,
            // say) as that option, and dnsmasq logs no `bootfile name:` line for it.
            if let Some(p) = &mut self.pending {
                if p.boot_file.is_none() {
                    p.boot_file = Some(b);
                }
            }
        } else if let Some(mut log) = parse_message(body) {
            out.extend(self.flush());
            log.vendor_class = self.ctx.vendor_class.clone();
            log.user_class = self.ctx.user_class.clone();
            log.arch = self.ctx.arch;
            log.tags = self.ctx.tags.clone();
            if log.hostname.is_none() {
                log.hostname = self.ctx.client_name.clone();
            }
            self.pending = Some(log);
        }
    }
}

/// `sent size: 31 option: 67 bootfile-name  http://10.77.0.1:4081/boot/ipxe.efi` → the URL.
fn sent_boot_file(body: &str) -> Option<String> {
    let rest = body.strip_prefix("sent size:")?;
    let (_, option) = rest.split_once("option:")?;
    let value = option.trim_start().strip_prefix("67 bootfile-name")?.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// Lines from dnsmasq's main log that stop it or that the operator should see.
fn main_problem(text: &str) -> Option<LogItem> {
    let lower = text.to_lowercase();
    if lower.contains("inaccessible")
        || lower.contains("failed to")
        || lower.contains("cannot ")
        || lower.contains("unknown interface")
    {
        Some(LogItem::Fatal(text.to_string()))
    } else if lower.starts_with("warning") || lower.contains("error") {
        Some(LogItem::Warning(text.to_string()))
    } else {
        None
    }
}

fn dhcp_problem(text: &str) -> Option<LogItem> {
    let lower = text.to_lowercase();
    if lower.contains("no address range available")
        || lower.contains("bad ")
        || lower.contains("duplicate")
        || lower.starts_with("warning")
    {
        Some(LogItem::Warning(text.to_string()))
    } else {
        None
    }
}

/// A failed transfer; `reason` is dnsmasq's own words (what the client was told).
fn tftp_failed(file: &str, client: &str, reason: String) -> Option<LogItem> {
    Some(LogItem::Tftp(TftpLog {
        file: file.to_string(),
        client: client.to_string(),
        ok: false,
        detail: reason,
    }))
}

/// dnsmasq 2.90's TFTP lines: `sent /srv/tftp/undionly.kpxe to 10.77.0.2`,
/// `file /srv/tftp/x not found for 10.77.0.2`, `failed sending /srv/tftp/x to 10.77.0.2`,
/// `error 8 User aborted the transfer received from 10.77.0.2`, `cannot access /srv/tftp/x:
/// Permission denied` (also what a `/../` in the path gets), `cannot read /srv/tftp/x: …`,
/// `unsupported request from 10.77.0.2`. The last three name no client.
fn parse_tftp(text: &str) -> Option<LogItem> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("sent ") {
        let (file, client) = rest.rsplit_once(" to ")?;
        return Some(LogItem::Tftp(TftpLog {
            file: file.to_string(),
            client: client.to_string(),
            ok: true,
            detail: String::new(),
        }));
    }
    if let Some(rest) = text.strip_prefix("failed sending ") {
        let (file, client) = rest.rsplit_once(" to ")?;
        return tftp_failed(file, client, "transfer failed".into());
    }
    if let Some(rest) = text.strip_prefix("file ") {
        let (file, client) = rest.rsplit_once(" not found for ")?;
        return tftp_failed(file, client, "file not found".into());
    }
    if let Some(rest) = text.strip_prefix("error ") {
        let (what, client) = rest.rsplit_once(" received from ")?;
        return tftp_failed("", client, format!("client sent error {what}"));
    }
    for prefix in ["cannot access ", "cannot read "] {
        if let Some(rest) = text.strip_prefix(prefix) {
            // The reason is strerror's text after the last `: ` (a path may hold `: ` too).
            let (file, why) = rest.rsplit_once(": ").unwrap_or((rest, "refused"));
            return tftp_failed(file, "", why.to_string());
        }
    }
    if let Some(client) = text.strip_prefix("unsupported request from ") {
        return tftp_failed("", client, "unsupported request".into());
    }
    if text.starts_with("TFTP root is") {
        return None;
    }
    main_problem(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(lines: &str) -> Vec<LogItem> {
        let mut p = LogParser::new();
        let mut out = Vec::new();
        for l in lines.lines() {
            out.extend(p.feed(l));
        }
        out.extend(p.flush());
        out
    }

    fn dhcp(items: &[LogItem]) -> Vec<&DhcpLog> {
        items
            .iter()
            .filter_map(|i| match i {
                LogItem::Dhcp(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    // Captured from dnsmasq 2.90 with --log-dhcp (option lines trimmed).
    const PXE_EXCHANGE: &str = "\
dnsmasq[14010]: started, version 2.90 DNS disabled
dnsmasq-dhcp[14010]: read /tmp/run/dnsmasq.hosts
dnsmasq-dhcp[14010]: 92916534 available DHCP range: 10.77.0.100 -- 10.77.0.200
dnsmasq-dhcp[14010]: 92916534 vendor class: PXEClient:Arch:00007:UNDI:003016
dnsmasq-dhcp[14010]: 92916534 DHCPDISCOVER(mt0) 0e:3e:7a:6b:fc:11 
dnsmasq-dhcp[14010]: 92916534 tags: efi64, mt0
dnsmasq-dhcp[14010]: 92916534 DHCPOFFER(mt0) 10.77.0.150 0e:3e:7a:6b:fc:11 
dnsmasq-dhcp[14010]: 92916534 requested options: 1:netmask, 3:router, 6:dns-server, 12:hostname, 
dnsmasq-dhcp[14010]: 92916534 bootfile name: ipxe.efi
dnsmasq-dhcp[14010]: 92916534 next server: 10.77.0.1
dnsmasq-dhcp[14010]: 92916534 sent size:  1 option: 53 message-type  2
dnsmasq-dhcp[14010]: 92916534 vendor class: PXEClient:Arch:00007:UNDI:003016
dnsmasq-dhcp[14010]: 92916534 client provides name: node1
dnsmasq-dhcp[14010]: 92916534 DHCPREQUEST(mt0) 10.77.0.150 0e:3e:7a:6b:fc:11 
dnsmasq-dhcp[14010]: 92916534 tags: efi64, mt0
dnsmasq-dhcp[14010]: 92916534 DHCPACK(mt0) 10.77.0.150 0e:3e:7a:6b:fc:11 node1
dnsmasq-dhcp[14010]: 92916534 bootfile name: ipxe.efi
dnsmasq-tftp[14010]: sent /tmp/tftp/ipxe.efi to 10.77.0.150
";

    #[test]
    fn a_pxe_exchange_becomes_four_messages_with_context() {
        let items = feed_all(PXE_EXCHANGE);
        assert_eq!(
            items[0],
            LogItem::Started {
                version: "2.90".into()
            }
        );
        assert_eq!(
            items[1],
            LogItem::FileRead {
                file: "/tmp/run/dnsmasq.hosts".into()
            }
        );
        let d = dhcp(&items);
        let names: Vec<_> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            names,
            ["DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPACK"]
        );
        let mac: Mac = "0e:3e:7a:6b:fc:11".parse().expect("test fixture");
        assert!(d.iter().all(|d| d.mac == Some(mac)));
        assert_eq!(d[0].ip, None);
        assert_eq!(d[0].arch, Some(ClientArch::Efi64));
        assert_eq!(
            d[0].vendor_class.as_deref(),
            Some("PXEClient:Arch:00007:UNDI:003016")
        );
        assert_eq!(d[1].ip, Some(Ipv4Addr::new(10, 77, 0, 150)));
        assert_eq!(d[1].boot_file.as_deref(), Some("ipxe.efi"));
        assert_eq!(d[0].boot_file, None, "the boot file belongs to the reply");
        assert_eq!(d[3].hostname.as_deref(), Some("node1"));
        assert_eq!(d[3].boot_file.as_deref(), Some("ipxe.efi"));
        assert_eq!(d[3].tags, vec!["efi64".to_string(), "mt0".to_string()]);
        assert!(d[3].detail().contains("boot ipxe.efi"), "{}", d[3].detail());
        let last = items.last().expect("test fixture");
        assert_eq!(
            *last,
            LogItem::Tftp(TftpLog {
                file: "/tmp/tftp/ipxe.efi".into(),
                client: "10.77.0.150".into(),
                ok: true,
                detail: String::new(),
            })
        );
    }

    #[test]
    fn a_pending_message_waits_for_its_boot_file_then_flushes() {
        let mut p = LogParser::new();
        assert!(p
            .feed("dnsmasq-dhcp[1]: 7 DHCPOFFER(eth0) 10.0.0.5 52:54:00:00:00:01 ")
            .is_empty());
        assert!(p.has_pending());
        assert!(p
            .feed("dnsmasq-dhcp[1]: 7 bootfile name: undionly.kpxe")
            .is_empty());
        let Some(LogItem::Dhcp(d)) = p.flush() else {
            panic!("no pending message")
        };
        assert_eq!(d.boot_file.as_deref(), Some("undionly.kpxe"));
        assert!(!p.has_pending());
    }

    #[test]
    fn ipxe_gets_its_url_and_a_nak_keeps_its_reason() {
        let items = feed_all(
            "dnsmasq-dhcp[1]: 9 user class: iPXE\n\
             dnsmasq-dhcp[1]: 9 DHCPREQUEST(br0) 10.77.0.120 52:54:00:12:34:56 \n\
             dnsmasq-dhcp[1]: 9 tags: ipxe, br0\n\
             dnsmasq-dhcp[1]: 9 DHCPACK(br0) 10.77.0.120 52:54:00:12:34:56 \n\
             dnsmasq-dhcp[1]: 9 bootfile name: http://10.77.0.1:4081/boot.ipxe\n\
             dnsmasq-dhcp[1]: 10 DHCPNAK(br0) 10.77.0.9 52:54:00:12:34:57 wrong network\n\
             dnsmasq-dhcp[1]: 11 DHCPDISCOVER(br0) 52:54:00:12:34:58 ignored\n\
             dnsmasq-dhcp[1]: 12 DHCPRELEASE(br0) 10.77.0.121 52:54:00:12:34:59 \n",
        );
        let d = dhcp(&items);
        assert_eq!(d.len(), 5);
        assert_eq!(d[1].user_class.as_deref(), Some("iPXE"));
        assert_eq!(
            d[1].boot_file.as_deref(),
            Some("http://10.77.0.1:4081/boot.ipxe")
        );
        assert_eq!(d[1].hostname, None);
        assert_eq!(d[2].message, "DHCPNAK");
        assert_eq!(d[2].note.as_deref(), Some("wrong network"));
        assert_eq!(d[2].hostname, None);
        assert_eq!(d[3].note.as_deref(), Some("ignored"));
        assert_eq!(d[3].ip, None);
        assert_eq!(d[4].message, "DHCPRELEASE");
        assert_eq!(d[4].ip, Some(Ipv4Addr::new(10, 77, 0, 121)));
    }

    #[test]
    fn bios_arch_comes_from_the_vendor_class() {
        let items = feed_all(
            "dnsmasq-dhcp[1]: 5 vendor class: PXEClient:Arch:00000:UNDI:002001\n\
             dnsmasq-dhcp[1]: 5 DHCPDISCOVER(br0) 52:54:00:12:34:56 \n",
        );
        assert_eq!(dhcp(&items)[0].arch, Some(ClientArch::Bios));
        let items = feed_all(
            "dnsmasq-dhcp[1]: 5 vendor class: PXEClient:Arch:00011:UNDI:003000\n\
             dnsmasq-dhcp[1]: 5 DHCPDISCOVER(br0) 52:54:00:12:34:56 \n",
        );
        assert_eq!(dhcp(&items)[0].arch, Some(ClientArch::Arm64));
    }

    #[test]
    fn tftp_failures_and_startup_failures() {
        let items = feed_all(
            "dnsmasq-tftp[3]: file /srv/tftp/nothere not found for 10.77.0.2\n\
             dnsmasq-tftp[3]: error 8 User aborted the transfer received from 10.77.0.3\n\
             dnsmasq-tftp[3]: failed sending /srv/tftp/ipxe.efi to 10.77.0.4\n\
             dnsmasq: unknown interface mayu0\n\
             dnsmasq[4]: TFTP directory /srv/tftp inaccessible: Permission denied\n\
             dnsmasq[4]: FAILED to start up\n\
             dnsmasq: syntax check OK.\n\
             something else entirely\n",
        );
        assert_eq!(items.len(), 5, "{items:?}");
        let LogItem::Tftp(t) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(
            (t.file.as_str(), t.client.as_str(), t.ok),
            ("/srv/tftp/nothere", "10.77.0.2", false)
        );
        assert_eq!(t.detail, "file not found");
        let LogItem::Tftp(t) = &items[1] else {
            panic!("{items:?}")
        };
        assert_eq!(t.client, "10.77.0.3");
        assert!(t.detail.contains("error 8"), "{}", t.detail);
        let LogItem::Tftp(t) = &items[2] else {
            panic!("{items:?}")
        };
        assert!(!t.ok);
        assert_eq!(items[3], LogItem::Fatal("unknown interface mayu0".into()));
        assert_eq!(
            items[4],
            LogItem::Fatal("TFTP directory /srv/tftp inaccessible: Permission denied".into())
        );
    }

    // Captured from dnsmasq 2.90 (`--log-facility=-`): a TFTP root with `/../` in it, a file
    // that is not there, and a file without the world-readable bit.
    const TFTP_FAILURES: &str = "\
dnsmasq-tftp[13906]: TFTP root is /tmp/fwx/t2/root/sub/..  
dnsmasq-tftp[13906]: cannot access /tmp/fwx/t2/root/sub/../ipxe.efi: Permission denied
dnsmasq-tftp[26209]: file /tmp/fwx/t2/root/nothere.efi not found for 127.0.0.1
dnsmasq-tftp[26209]: cannot access /tmp/fwx/t2/root/secret.efi: Permission denied
dnsmasq-tftp[26209]: sent /tmp/fwx/t2/root/ipxe.efi to 127.0.0.1
";

    #[test]
    fn tftp_failures_carry_dnsmasqs_reason() {
        let items = feed_all(TFTP_FAILURES);
        let tftp: Vec<&TftpLog> = items
            .iter()
            .filter_map(|i| match i {
                LogItem::Tftp(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(tftp.len(), 4, "{items:?}");
        assert_eq!(
            *tftp[0],
            TftpLog {
                file: "/tmp/fwx/t2/root/sub/../ipxe.efi".into(),
                client: String::new(),
                ok: false,
                detail: "Permission denied".into(),
            }
        );
        assert_eq!(
            (tftp[1].client.as_str(), tftp[1].detail.as_str(), tftp[1].ok),
            ("127.0.0.1", "file not found", false)
        );
        assert_eq!(tftp[2].file, "/tmp/fwx/t2/root/secret.efi");
        assert_eq!(tftp[2].detail, "Permission denied");
        assert!(tftp[3].ok);
        assert!(tftp[3].detail.is_empty());
    }

    // Captured from dnsmasq 2.90 with --log-dhcp: OVMF's HTTP boot client asks for option 67,
    // so the URL goes out as that option and no `bootfile name:` line is logged.
    const HTTP_BOOT_OFFER: &str = "\
dnsmasq-dhcp[11875]: 2814426273 available DHCP range: 10.77.0.100 -- 10.77.0.200
dnsmasq-dhcp[11875]: 2814426273 vendor class: HTTPClient:Arch:00016:UNDI:003000
dnsmasq-dhcp[11875]: 2814426273 DHCPDISCOVER(br0) 52:54:00:77:09:01 
dnsmasq-dhcp[11875]: 2814426273 tags: httpboot, efi64, br0
dnsmasq-dhcp[11875]: 2814426273 DHCPOFFER(br0) 10.77.0.144 52:54:00:77:09:01 
dnsmasq-dhcp[11875]: 2814426273 requested options: 59:T2, 60:vendor-class, 235, 67:bootfile-name, 
dnsmasq-dhcp[11875]: 2814426273 next server: 10.77.0.1
dnsmasq-dhcp[11875]: 2814426273 sent size:  4 option: 51 lease-time  1h
dnsmasq-dhcp[11875]: 2814426273 sent size: 31 option: 67 bootfile-name  http://10.77.0.1:8000/ipxe.efi
dnsmasq-dhcp[11875]: 2814426273 sent size: 10 option: 60 vendor-class  48:54:54:50:43:6c:69:65:6e:74
";

    #[test]
    fn an_http_boot_offer_carries_its_url_and_arch() {
        let items = feed_all(HTTP_BOOT_OFFER);
        let d = dhcp(&items);
        assert_eq!(d.len(), 2, "{items:?}");
        assert_eq!(d[0].arch, Some(ClientArch::Efi64Http));
        assert_eq!(d[0].boot_file, None);
        assert_eq!(d[1].message, "DHCPOFFER");
        assert_eq!(
            d[1].boot_file.as_deref(),
            Some("http://10.77.0.1:8000/ipxe.efi")
        );
        assert!(
            d[1].detail().contains("efi64 http boot"),
            "{}",
            d[1].detail()
        );
    }
}
