//! An iPXE query string (`mac=…&uuid=…&serial=…&arch=…`) decoded by the boot port's own
//! `IpxeQuery`, then the identity normalisation: `Mac` parsing and `MachineId::derive`. Never
//! panics; a derived id is a safe file name that round-trips through `MachineId`'s parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mayu::boot::IpxeQuery;
use mayu::machine::{Mac, MachineId};

/// What `MachineId` promises: 1–128 of `a-z 0-9 . - _`, not starting with `.` (so never `.`,
/// `..`, a path separator, a blank or a control character), and its own parser takes it back.
fn check_id(id: &MachineId) {
    let s = id.as_str();
    assert!(!s.is_empty() && s.len() <= 128, "{s:?}");
    assert!(!s.starts_with('.'), "{s:?}");
    assert!(
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')),
        "{s:?}"
    );
    assert_eq!(s.parse::<MachineId>().as_ref(), Ok(id));
    let json = serde_json::to_string(id).unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<MachineId>(&json).ok().as_ref(),
        Some(id)
    );
}

fn check_mac(text: &str) -> Option<Mac> {
    let mac = text.parse::<Mac>().ok()?;
    check_parsed_mac(mac);
    Some(mac)
}

/// A parsed MAC shows as 17 characters that parse back to it, and identifies a machine.
fn check_parsed_mac(mac: Mac) {
    let shown = mac.to_string();
    assert_eq!(shown.len(), 17, "{shown}");
    assert_eq!(shown.parse::<Mac>(), Ok(mac));
    let id = MachineId::from_mac(&mac);
    check_id(&id);
    assert_eq!(MachineId::derive(None, None, Some(&mac)).as_ref(), Ok(&id));
}

fn derive(serial: Option<&str>, uuid: Option<&str>, mac: Option<&Mac>) {
    let first = MachineId::derive(serial, uuid, mac);
    assert_eq!(
        first,
        MachineId::derive(serial, uuid, mac),
        "not deterministic"
    );
    match first {
        Ok(id) => check_id(&id),
        Err(_) => assert!(mac.is_none(), "a MAC always identifies a machine"),
    }
}

fuzz_target!(|text: &str| {
    // The raw text as each field, as if nothing had decoded it.
    let raw_mac = check_mac(text);
    derive(Some(text), None, None);
    derive(None, Some(text), raw_mac.as_ref());

    let Some(q) = IpxeQuery::parse(text) else {
        return;
    };
    let Ok(reg) = q.registration(None) else {
        return; // the boot port answers 400
    };
    if let Some(mac) = reg.mac {
        check_parsed_mac(mac);
    }
    // The engine refuses such a registration before deriving; derive must still be safe.
    let _ = mayu::text::check_registration(&reg);
    derive(reg.serial.as_deref(), reg.uuid.as_deref(), reg.mac.as_ref());
});
