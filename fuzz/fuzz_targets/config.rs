//! `Config::parse` on any text: never panics, and every error it reports is located
//! (`file:line:col: message`, line and column counted from 1) for the operator.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// Parsed as if it were the shipped config, so `images/` and `templates/` resolve to the
/// repo's and a valid input reaches the semantic checks and the success path.
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.yaml");

fuzz_target!(|text: &str| {
    let path = Path::new(CONFIG);
    let Err(errors) = mayu::Config::parse(path, text) else {
        return;
    };
    assert!(!errors.0.is_empty(), "an Err holds at least one error");
    for e in &errors.0 {
        assert_eq!(e.file, path, "{e}");
        assert!(e.line >= 1 && e.column >= 1, "unlocated error: {e:?}");
        assert!(!e.message.trim().is_empty(), "empty message: {e:?}");
        let prefix = format!("{}:{}:{}: ", path.display(), e.line, e.column);
        assert!(e.to_string().starts_with(&prefix), "{e}");
    }
});
