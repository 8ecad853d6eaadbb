//! dnsmasq's lease file: never panics; what it yields is sorted by address, unexpired, and
//! `*` (dnsmasq's "none") never shows up as a hostname or client id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mayu::dnsmasq::leases::parse_leases;
use time::OffsetDateTime;

fuzz_target!(|text: &str| {
    let now =
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let leases = parse_leases(text, now);
    assert!(leases.len() <= text.lines().count());
    assert!(leases.windows(2).all(|w| w[0].ip <= w[1].ip), "not sorted");
    for l in &leases {
        assert!(
            l.expires.is_none_or(|t| t >= now),
            "expired lease kept: {l:?}"
        );
        assert_ne!(l.hostname.as_deref(), Some("*"));
        assert_ne!(l.client_id.as_deref(), Some("*"));
        assert!(l.machine.is_none());
    }
});
