//! dnsmasq's log, line by line through one `LogParser`: never panics, whatever the child prints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mayu::dnsmasq::logparse::{LogItem, LogParser};

fuzz_target!(|text: &str| {
    let mut p = LogParser::new();
    let mut items = Vec::new();
    for line in text.lines() {
        items.extend(p.feed(line));
    }
    items.extend(p.flush());
    assert!(!p.has_pending(), "flush leaves nothing pending");
    for item in &items {
        if let LogItem::Dhcp(d) = item {
            // what the console and the API show for it
            let _ = d.detail();
            if let Some(a) = d.arch {
                assert!(!a.as_str().is_empty());
            }
        }
    }
});
