//! The control-character policy for machine text: what a stored field may hold, and how any
//! text is rendered where a control character would be read as an instruction (a terminal, a
//! git commit message, a dnsmasq hosts line).
//!
//! Machine and operator text is data. Every field is checked once at the edge ([`check_line`],
//! [`check_notes`]); every output path that could be confused by a control character escapes
//! what it prints ([`escape_control`]), so a value that predates the checks (an old inventory
//! file, an import) still cannot forge a line or drive a terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest single-line field (serial, uuid, arch, provider id, rack, addresses…), in bytes.
pub const MAX_FIELD: usize = 256;
/// Longest `notes`, in bytes.
pub const MAX_NOTES: usize = 4096;

/// Why a value was refused; the message quotes nothing of the value itself, since the value is
/// exactly what must not be echoed raw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("holds a control character ({0}) at byte {1}")]
    Control(String, usize),
    #[error("is {0} bytes long; at most {1} are allowed")]
    TooLong(usize, usize),
    #[error("is not an IP address (IPv4 or IPv6, no port)")]
    NotIp,
    #[error("is not a hostname (letters, digits, '-' and '.', labels of 1–63 characters)")]
    NotHostname,
    #[error("has {0} entries; at most {1} are allowed")]
    TooMany(usize, usize),
    #[error("is empty")]
    Empty,
    #[error("is not a device name (letters, digits and `._-:!+@/`, no `..`)")]
    NotDeviceName,
}

/// A field that failed its check, named as the API and the JSON files name it
/// (`provider_id`, `rack.rack`, `facts.disks[2].model`, `overrides` key…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {error}")]
pub struct FieldError {
    pub field: String,
    pub error: TextError,
}

impl FieldError {
    fn at(field: impl Into<String>) -> impl FnOnce(TextError) -> FieldError {
        let field = field.into();
        move |error| FieldError { field, error }
    }
}

impl From<FieldError> for crate::engine::EngineError {
    fn from(e: FieldError) -> Self {
        crate::engine::EngineError::Invalid(e.to_string())
    }
}

/// Most disks or NICs one facts report may list.
pub const MAX_ITEMS: usize = 256;

/// Whether `c` is a control character: C0 (NUL … US, including `\t` and `\n`), DEL and C1
/// (U+0080 … U+009F). These are what terminals and line-oriented formats act on.
/// Compact durations for operators: `42s`, `4m05s`, `2h03m`, `3d04h`.
pub fn duration(secs: u64) -> String {
    let s = secs;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub fn is_control(c: char) -> bool {
    c.is_control()
}

/// Renders `s` with every control character as a visible escape: `\n`, `\r`, `\t`, `\0`, other
/// C0 and DEL as `\x1b`-style hex, C1 characters as `\u{85}`. A backslash is doubled
/// only when the text holds something to escape, so ordinary text is returned borrowed and
/// unchanged while escaped output can never be confused with a literal backslash sequence.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x80 && is_control(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A single-line field: at most [`MAX_FIELD`] bytes, no control character at all.
pub fn check_line(s: &str) -> Result<(), TextError> {
    check(s, MAX_FIELD, |_| false)
}

/// Operator notes: at most [`MAX_NOTES`] bytes; `\n` and `\t` are kept (every output path
/// escapes them), every other control character is refused.
pub fn check_notes(s: &str) -> Result<(), TextError> {
    check(s, MAX_NOTES, |c| c == '\n' || c == '\t')
}

fn check(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> Result<(), TextError> {
    if s.len() > max {
        return Err(TextError::TooLong(s.len(), max));
    }
    match s
        .char_indices()
        .find(|&(_, c)| is_control(c) && !allowed(c))
    {
        Some((at, c)) => Err(TextError::Control(
            escape_control(c.encode_utf8(&mut [0; 4])).into_owned(),
            at,
        )),
        None => Ok(()),
    }
}

/// A BMC address: an IPv4 or IPv6 address, nothing more. No port (IPMI is UDP 623 by
/// definition, Redfish is HTTPS 443; a tool that needs another port takes it from its own
/// config), no brackets, no zone id, no hostname: the value is handed to IPMI tooling and
/// templates, where a name would add a DNS dependency to power control. Surrounding blanks
/// are trimmed; the canonical spelling is returned.
pub fn parse_ip_addr(s: &str) -> Result<String, TextError> {
    check_line(s)?;
    s.trim()
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| TextError::NotIp)
}

/// A hostname as dnsmasq and DNS take it (the same rule as [`crate::machine::valid_hostname`]).
pub fn check_hostname(s: &str) -> Result<(), TextError> {
    check_line(s)?;
    if crate::machine::valid_hostname(s) {
        Ok(())
    } else {
        Err(TextError::NotHostname)
    }
}

/// What iPXE reports at registration (`serial`, `uuid`, `arch` from its query string) is
/// refused whole when it holds a control character or is longer than [`MAX_FIELD`]: firmware
/// never sends those, so such a request is an attack or a broken client, and refusing keeps one
/// rule for every field (nothing is stored half-cleaned).
pub fn check_registration(reg: &crate::engine::Registration) -> Result<(), FieldError> {
    for (name, v) in [
        ("serial", &reg.serial),
        ("uuid", &reg.uuid),
        ("arch", &reg.arch),
    ] {
        if let Some(v) = v {
            check_line(v).map_err(FieldError::at(name))?;
        }
    }
    Ok(())
}

/// Hardware facts a machine reports: every string a single line, at most [`MAX_ITEMS`] disks
/// and NICs.
pub fn check_facts(f: &crate::machine::Facts) -> Result<(), FieldError> {
    for (name, v) in [
        ("facts.cpu_model", &f.cpu_model),
        ("facts.vendor", &f.vendor),
        ("facts.product", &f.product),
    ] {
        if let Some(v) = v {
            check_line(v).map_err(FieldError::at(name))?;
        }
    }
    for (name, n) in [("facts.disks", f.disks.len()), ("facts.nics", f.nics.len())] {
        if n > MAX_ITEMS {
            return Err(FieldError::at(name)(TextError::TooMany(n, MAX_ITEMS)));
        }
    }
    for (i, d) in f.disks.iter().enumerate() {
        check_device(&d.name).map_err(FieldError::at(format!("facts.disks[{i}].name")))?;
        if let Some(m) = &d.model {
            check_line(m).map_err(FieldError::at(format!("facts.disks[{i}].model")))?;
        }
    }
    for (i, n) in f.nics.iter().enumerate() {
        check_device(&n.name).map_err(FieldError::at(format!("facts.nics[{i}].name")))?;
    }
    Ok(())
}

/// A disk or NIC name as the kernel gives it (`sda`, `nvme0n1`, `cciss/c0d0`, `enp1s0`). Templates
/// build device paths and command lines from it (`/dev/{{ machine.facts.disks.0.name }}` in
/// the shipped control-plane install), so blanks, quotes, `$` and `..` are refused, not just
/// control characters.
pub fn check_device(s: &str) -> Result<(), TextError> {
    check_line(s)?;
    let ok = !s.is_empty()
        && !s.starts_with(['/', '-'])
        && !s.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '!' | '+' | '@' | '/')
        });
    if ok {
        Ok(())
    } else {
        Err(TextError::NotDeviceName)
    }
}

/// A BMC address from an operator or a machine: an IP address (see [`parse_ip_addr`]),
/// returned in its canonical spelling.
pub fn ipmi_addr(field: &str, v: &str) -> Result<String, FieldError> {
    parse_ip_addr(v).map_err(FieldError::at(field))
}

/// A template override's key: one line, not empty. (Values are JSON and reach text only as
/// JSON, which escapes control characters.)
pub fn check_override_key(k: &str) -> Result<(), FieldError> {
    if k.is_empty() {
        return Err(FieldError::at("overrides")(TextError::Empty));
    }
    check_line(k).map_err(FieldError::at(format!("overrides.{}", escape_control(k))))
}

/// An operator's (or a machine's) edit, checked field by field and returned with the BMC
/// address in canonical form. An empty `ipmi_addr` is kept: it clears the address.
pub fn check_edit(mut e: crate::engine::Edit) -> Result<crate::engine::Edit, FieldError> {
    if let Some(h) = &e.hostname {
        check_hostname(h).map_err(FieldError::at("hostname"))?;
    }
    if let Some(a) = &e.ipmi_addr {
        if !a.is_empty() {
            e.ipmi_addr = Some(ipmi_addr("ipmi_addr", a)?);
        }
    }
    if let Some(p) = &e.provider_id {
        check_line(p).map_err(FieldError::at("provider_id"))?;
    }
    if let Some(r) = &e.rack {
        check_line(&r.rack).map_err(FieldError::at("rack.rack"))?;
    }
    if let Some(n) = &e.notes {
        check_notes(n).map_err(FieldError::at("notes"))?;
    }
    for k in e.overrides.keys() {
        check_override_key(k)?;
    }
    if let Some(md) = &e.metadata {
        for label in md {
            check_line(label).map_err(FieldError::at("metadata"))?;
        }
    }
    if let Some(t) = &e.etcd_token {
        check_line(t).map_err(FieldError::at("etcd_token"))?;
    }
    for (k, v) in &e.versions {
        if k.is_empty() {
            return Err(FieldError::at("versions")(TextError::Empty));
        }
        check_line(k).map_err(FieldError::at("versions"))?;
        check_line(v).map_err(FieldError::at("versions"))?;
    }
    Ok(e)
}

/// A whole machine record from outside the API (an import): the same rules as the edges.
pub fn check_machine(m: &crate::machine::Machine) -> Result<(), FieldError> {
    for (name, v) in [
        ("serial", &m.serial),
        ("uuid", &m.uuid),
        ("arch", &m.arch),
        ("provider_id", &m.provider_id),
        ("etcd_token", &m.etcd_token),
    ] {
        if let Some(v) = v {
            check_line(v).map_err(FieldError::at(name))?;
        }
    }
    if let Some(h) = &m.hostname {
        check_hostname(h).map_err(FieldError::at("hostname"))?;
    }
    if let Some(a) = m.ipmi_addr.as_deref().filter(|a| !a.is_empty()) {
        ipmi_addr("ipmi_addr", a)?;
    }
    if let Some(p) = &m.profile {
        check_line(p).map_err(FieldError::at("profile"))?;
    }
    if let Some(r) = &m.rack {
        check_line(&r.rack).map_err(FieldError::at("rack.rack"))?;
    }
    check_notes(&m.notes).map_err(FieldError::at("notes"))?;
    for k in m.overrides.keys() {
        check_override_key(k)?;
    }
    for label in &m.metadata {
        check_line(label).map_err(FieldError::at("metadata"))?;
    }
    for (k, v) in &m.versions {
        check_line(k).map_err(FieldError::at("versions"))?;
        check_line(v).map_err(FieldError::at("versions"))?;
    }
    check_facts(&m.facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape_control("node-1 rack A"), Cow::Borrowed(_)));
        assert!(matches!(escape_control("a\\b"), Cow::Borrowed(_)));
        assert!(matches!(escape_control("ünïcode ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_are_visible() {
        assert_eq!(escape_control("a\nb"), "a\\nb");
        assert_eq!(escape_control("\x1b[2J"), "\\x1b[2J");
        assert_eq!(escape_control("nul\0"), "nul\\0");
        assert_eq!(escape_control("\r\t\x7f"), "\\r\\t\\x7f");
        assert_eq!(escape_control("c1\u{9b}"), "c1\\u{9b}");
        // with something escaped, a literal backslash is doubled so `\\n` and `\n` differ
        assert_eq!(escape_control("\\n\n"), "\\\\n\\n");
        let all: String = (0u32..0x100).filter_map(char::from_u32).collect();
        assert!(!escape_control(&all).chars().any(is_control));
    }

    #[test]
    fn lines_and_notes() {
        assert!(check_line("R12-U04").is_ok());
        assert!(matches!(check_line("a\nb"), Err(TextError::Control(_, 1))));
        assert!(check_line("\u{85}").is_err());
        assert!(check_line(&"x".repeat(MAX_FIELD)).is_ok());
        assert!(matches!(
            check_line(&"x".repeat(MAX_FIELD + 1)),
            Err(TextError::TooLong(..))
        ));
        assert!(check_notes("line one\n\tline two").is_ok());
        assert!(check_notes("beep\x07").is_err());
        assert!(check_notes("\r\n").is_err());
        assert!(check_notes(&"x".repeat(MAX_NOTES + 1)).is_err());
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(parse_ip_addr("10.0.0.5").as_deref(), Ok("10.0.0.5"));
        assert_eq!(parse_ip_addr(" fd00::0001 ").as_deref(), Ok("fd00::1"));
        assert_eq!(parse_ip_addr("10.0.0.5:623"), Err(TextError::NotIp));
        assert_eq!(parse_ip_addr("bmc.lab"), Err(TextError::NotIp));
        assert!(parse_ip_addr("10.0.0.5\n").is_err());
        assert!(parse_ip_addr("").is_err());
    }

    #[test]
    fn device_names() {
        for ok in ["sda", "nvme0n1", "cciss/c0d0", "enp1s0", "eth0.100", "md-0"] {
            assert_eq!(check_device(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "sda -b http://x",
            "sda\n",
            "../etc",
            "/dev/sda",
            "a//b",
            "-o",
            "$(x)",
            "sda;x",
            "sdä",
        ] {
            assert!(check_device(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn edits_name_the_field() {
        use crate::engine::Edit;
        let e = check_edit(Edit {
            provider_id: Some(r"aws:///i-1\nnot-a-newline".into()),
            ..Edit::default()
        });
        assert!(e.is_ok(), "a literal backslash is fine: {e:?}");
        let e = check_edit(Edit {
            provider_id: Some("i-1\nforged".into()),
            ..Edit::default()
        })
        .unwrap_err();
        assert_eq!(e.field, "provider_id");
        assert_eq!(
            e.to_string(),
            r"`provider_id` holds a control character (\n) at byte 3"
        );
        let e = check_edit(Edit {
            ipmi_addr: Some("fd00::0001".into()),
            ..Edit::default()
        })
        .unwrap();
        assert_eq!(e.ipmi_addr.as_deref(), Some("fd00::1"));
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert("a\x1bb".to_string(), None);
        let e = check_edit(Edit {
            overrides,
            ..Edit::default()
        })
        .unwrap_err();
        assert_eq!(e.field, r"overrides.a\x1bb");
    }
}
