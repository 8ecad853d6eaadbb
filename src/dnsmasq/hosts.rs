//! The `dhcp-hostsfile` mayu writes from the inventory: one line per machine with its MACs,
//! its static address and its hostname. dnsmasq re-reads it on SIGHUP, so an inventory change
//! never restarts dnsmasq. Every listed MAC gets dnsmasq's `known` tag, which the
//! `known_only` setting uses to ignore everything else.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::config::{DhcpMode, NetworkConfig};
use crate::machine::{Mac, Machine, MachineId};

/// What the hostsfile holds of one machine; an inventory change that leaves this alone needs
/// no new file and no SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub id: MachineId,
    pub macs: Vec<Mac>,
    pub ip: Option<Ipv4Addr>,
    pub hostname: Option<String>,
}

impl HostEntry {
    pub fn of(m: &Machine) -> HostEntry {
        HostEntry {
            id: m.id.clone(),
            macs: m.macs.clone(),
            ip: m.ip,
            hostname: m.hostname.clone(),
        }
    }
}

/// The hostsfile's text for `machines`: see [`render_entries`].
pub fn render_hosts(machines: &[Machine], net: &NetworkConfig) -> String {
    let entries: Vec<HostEntry> = machines.iter().map(HostEntry::of).collect();
    render_entries(&entries, net)
}

/// The hostsfile's text. Addresses are only given in `full` mode (in proxy mode another server
/// owns them) and only when they sit inside the boot subnet and are not the server's own, the
/// network's or the broadcast address; an address two machines claim goes to the first (by id)
/// so dnsmasq never sees a duplicate.
pub fn render_entries(entries: &[HostEntry], net: &NetworkConfig) -> String {
    let subnet = net.subnet().ok();
    let mut taken: HashSet<Ipv4Addr> = HashSet::new();
    let mut sorted: Vec<&HostEntry> = entries.iter().filter(|m| !m.macs.is_empty()).collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = String::from("# written by mayu from the inventory; changes here are lost\n");
    for m in sorted {
        let mut fields: Vec<String> = m.macs.iter().map(|mac| mac.to_string()).collect();
        let usable = |ip: &Ipv4Addr| {
            net.dhcp.mode == DhcpMode::Full
                && *ip != net.address
                && subnet
                    .is_some_and(|s| s.contains(ip) && *ip != s.network() && *ip != s.broadcast())
        };
        if let Some(ip) = m.ip.filter(usable) {
            if taken.insert(ip) {
                fields.push(ip.to_string());
            } else {
                tracing::warn!(machine = %m.id, %ip, "address already given to another machine; left out of the hostsfile");
            }
        }
        if let Some(h) = m.hostname.as_deref().filter(|h| valid_hostname(h)) {
            fields.push(h.to_string());
        }
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// dnsmasq takes a name only from letters, digits, `-` and `.`; anything else would end up in
/// its config syntax.
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !h.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn net(mode: &str) -> NetworkConfig {
        let yaml = format!(
            "network:\n  interface: mt0\n  address: 10.77.0.1\n  dhcp:\n    mode: {mode}\n    range: [10.77.0.100, 10.77.0.200]\nassignment: manual\n"
        );
        crate::Config::parse(std::path::Path::new("/config.yaml"), &yaml)
            .expect("test fixture")
            .network
    }

    fn machine(id: &str, macs: &[&str], ip: Option<&str>, host: Option<&str>) -> Machine {
        let mut m = Machine::new(
            id.parse::<MachineId>().expect("test fixture"),
            "t".into(),
            OffsetDateTime::UNIX_EPOCH,
        );
        m.macs = macs
            .iter()
            .map(|s| s.parse::<Mac>().expect("test fixture"))
            .collect();
        m.ip = ip.map(|s| s.parse().expect("test fixture"));
        m.hostname = host.map(str::to_string);
        m
    }

    #[test]
    fn lines_hold_macs_address_and_name() {
        let ms = vec![
            machine("b", &["52:54:00:00:00:02"], Some("10.77.0.150"), Some("n2")),
            machine(
                "a",
                &["52:54:00:00:00:01", "52:54:00:00:00:11"],
                None,
                Some("n1"),
            ),
            machine("c", &["52:54:00:00:00:03"], Some("10.77.0.150"), None),
            machine("d", &["52:54:00:00:00:04"], Some("10.78.0.5"), None),
            machine("e", &[], Some("10.77.0.151"), None),
            machine(
                "f",
                &["52:54:00:00:00:06"],
                Some("10.77.0.1"),
                Some("bad,name"),
            ),
        ];
        let text = render_hosts(&ms, &net("full"));
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "52:54:00:00:00:01,52:54:00:00:00:11,n1",
                "52:54:00:00:00:02,10.77.0.150,n2",
                "52:54:00:00:00:03",
                "52:54:00:00:00:04",
                "52:54:00:00:00:06",
            ]
        );
        let proxy = render_hosts(&ms, &net("proxy"));
        assert!(proxy.contains("52:54:00:00:00:02,n2\n"), "{proxy}");
        assert!(!proxy.contains("10.77.0.150"), "{proxy}");
    }
}
