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
}

/// Whether `c` is a control character: C0 (NUL … US, including `\t` and `\n`), DEL and C1
/// (U+0080 … U+009F). These are what terminals and line-oriented formats act on.
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
}
