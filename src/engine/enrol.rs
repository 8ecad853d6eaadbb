//! Enrolment: with `known_only` DHCP, dnsmasq ignores every MAC mayu does not know (right: a
//! stranger on the boot network gets nothing). The engine remembers those it ignored — first
//! and last seen, how often, the vendor class they sent — so an operator can see them (console
//! leases page, `GET /api/v1/ignored`, `mayuctl ignored`) and enrol one: one write that makes
//! the MAC a machine, optionally in a profile, with hostname and rack. The hostsfile task then
//! lists it as known and dnsmasq answers it on its next DHCPDISCOVER.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Change, Engine, EngineError, Index};
use crate::events::EventKind;
use crate::machine::{valid_hostname, AssignedBy, Mac, Machine, MachineId, Rack, State};

/// How many ignored MACs are remembered; the oldest (by last seen) is forgotten first, so a
/// flood of random MACs cannot grow memory without bound.
pub const MAX_IGNORED: usize = 1024;

/// A DHCP client dnsmasq ignored because mayu does not know its MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredClient {
    pub mac: Mac,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// DHCP messages ignored from it.
    pub count: u64,
    /// option 60 as the client sent it (`PXEClient:Arch:00007:UNDI:003016`, `HTTPClient:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_class: Option<String>,
    /// the interface it was heard on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// What an operator knows of a machine before it ever booted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Enrolment {
    pub mac: Option<Mac>,
    /// a profile to assign (and pin) at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<Rack>,
    /// assign past a full quota.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

impl Index {
    /// The ignored clients, most recently seen first.
    pub(super) fn ignored_now(&self) -> Vec<IgnoredClient> {
        let mut out: Vec<IgnoredClient> = self.ignored.values().cloned().collect();
        out.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.mac.cmp(&b.mac)));
        out
    }

    /// Notes one ignored message from `mac`; true when the MAC is new to the list.
    fn note_ignored(
        &mut self,
        mac: Mac,
        vendor_class: Option<String>,
        interface: Option<String>,
        at: OffsetDateTime,
    ) -> bool {
        if let Some(c) = self.ignored.get_mut(&mac) {
            c.last_seen = at;
            c.count += 1;
            if vendor_class.is_some() {
                c.vendor_class = vendor_class;
            }
            if interface.is_some() {
                c.interface = interface;
            }
            return false;
        }
        if self.ignored.len() >= MAX_IGNORED {
            let oldest = self
                .ignored
                .values()
                .min_by_key(|c| c.last_seen)
                .map(|c| c.mac);
            if let Some(mac) = oldest {
                self.ignored.remove(&mac);
            }
        }
        self.ignored.insert(
            mac,
            IgnoredClient {
                mac,
                first_seen: at,
                last_seen: at,
                count: 1,
                vendor_class,
                interface,
            },
        );
        true
    }
}

impl Engine {
    /// Records that dnsmasq ignored a DHCP message from `mac` (a MAC mayu knows is not
    /// recorded: dnsmasq ignores known machines only while its hostsfile catches up). The
    /// first message from a MAC is announced; later ones only update the record.
    pub fn note_ignored(&self, mac: Mac, vendor_class: Option<String>, interface: Option<String>) {
        let mut idx = self.index();
        if idx.by_mac.contains_key(&mac) {
            return;
        }
        if idx.note_ignored(mac, vendor_class, interface, OffsetDateTime::now_utc()) {
            if let Some(client) = idx.ignored.get(&mac).cloned() {
                self.inner.bus.publish(EventKind::Ignored { client });
            }
        }
    }

    /// The DHCP clients ignored since start, most recently seen first.
    pub fn ignored(&self) -> Vec<IgnoredClient> {
        self.index().ignored_now()
    }

    /// Makes `e.mac` a machine (one durable write, one audit record), in `e.profile` if given
    /// (quota checked under the same lock as every other assignment), and takes it off the
    /// ignored list.
    pub fn enrol(&self, e: Enrolment, actor: &str) -> Result<Machine, EngineError> {
        self.begin_enrol(e, actor)?.wait()
    }

    /// [`Engine::enrol`] without waiting for the disk.
    pub fn begin_enrol(&self, e: Enrolment, actor: &str) -> Result<super::Written, EngineError> {
        let mac = e
            .mac
            .ok_or_else(|| EngineError::Invalid("a MAC address is required to enrol".into()))?;
        let invalid = |field: &str, err: crate::text::TextError| {
            EngineError::Invalid(format!("`{field}` {err}"))
        };
        if let Some(h) = &e.hostname {
            crate::text::check_hostname(h).map_err(|err| invalid("hostname", err))?;
            if !valid_hostname(h) {
                return Err(EngineError::Invalid(format!(
                    "`{h}` is not a hostname; use letters, digits and `-`, dot-separated"
                )));
            }
        }
        if let Some(r) = &e.rack {
            crate::text::check_line(&r.rack).map_err(|err| invalid("rack", err))?;
        }
        let profile = e
            .profile
            .as_deref()
            .map(|name| self.profile_named(name))
            .transpose()?;
        let id = MachineId::derive(None, None, Some(&mac))?;
        let now = OffsetDateTime::now_utc();
        let mut idx = self.index();
        if let Some(known) = idx.by_mac.get(&mac).or_else(|| {
            idx.machines
                .contains_key(&id)
                .then_some(&id)
                .or_else(|| idx.unreadable_macs.get(&mac))
        }) {
            return Err(EngineError::AlreadyKnown {
                mac,
                id: known.to_string(),
            });
        }
        let mut m = Machine::new(id.clone(), self.inner.key.get().token(id.as_str()), now);
        m.macs.push(mac);
        m.hostname = e.hostname;
        m.rack = e.rack;
        m.pinned = true;
        let mut what = vec![format!("enrolled {mac}")];
        if let Some(p) = profile {
            if let Some(q) = p.quantity {
                let held = idx.tally.assigned.get(&p.name).copied().unwrap_or(0);
                if held >= q && !e.force {
                    return Err(EngineError::ProfileFull {
                        name: p.name.clone(),
                        quantity: q,
                    });
                }
            }
            m.profile = Some(p.name.clone());
            m.assigned_by = Some(AssignedBy::Operator(actor.to_string()));
            m.state = State::Configured;
            what.push(format!("assigned to {}", p.name));
        }
        let change = Change {
            actor: actor.to_string(),
            what: what.join(", "),
        };
        idx.ignored.remove(&mac);
        idx.put(m.clone());
        self.adopt_steps(&mut idx, &m);
        let ticket = self.queue(&idx, &m, &change);
        self.inner.bus.publish(EventKind::MachineAdded {
            machine: Box::new(m.redacted()),
            actor: actor.to_string(),
        });
        Ok(super::Written {
            rev: idx.rev(&m.id),
            machine: m,
            ticket: Some(ticket),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ignored_clients_are_counted_and_bounded() {
        let mut idx = Index::default();
        let t0 = datetime!(2026-12-01 10:00 UTC);
        let mac = Mac::from_octets([0x52, 0x54, 0, 0, 0, 1]);
        assert!(idx.note_ignored(mac, Some("PXEClient".into()), None, t0));
        assert!(!idx.note_ignored(mac, None, Some("br0".into()), t0 + time::Duration::SECOND));
        let c = &idx.ignored[&mac];
        assert_eq!(c.count, 2);
        assert_eq!(c.first_seen, t0);
        assert_eq!(c.last_seen, t0 + time::Duration::SECOND);
        assert_eq!(c.vendor_class.as_deref(), Some("PXEClient"));
        assert_eq!(c.interface.as_deref(), Some("br0"));
        for i in 0..MAX_IGNORED as u32 + 10 {
            let b = i.to_be_bytes();
            let m = Mac::from_octets([0x02, 0, b[0], b[1], b[2], b[3]]);
            idx.note_ignored(
                m,
                None,
                None,
                t0 + time::Duration::seconds(i64::from(i) + 5),
            );
        }
        assert_eq!(idx.ignored.len(), MAX_IGNORED);
        assert!(
            !idx.ignored.contains_key(&mac),
            "the least recently seen goes first"
        );
    }
}
