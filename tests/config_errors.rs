//! Config errors name file, line and column; semantic checks catch what YAML cannot.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use mayu::Config;

fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml")
}

/// The shipped config with `from` replaced by `to`, parsed as if it lived in the repo root.
fn variant(from: &str, to: &str) -> Result<Config, mayu::config::ConfigErrors> {
    let text = std::fs::read_to_string(repo_config()).unwrap();
    assert!(
        text.contains(from),
        "fixture text `{from}` not in config.yaml"
    );
    let text = text.replacen(from, to, 1);
    Config::parse(&repo_config(), &text)
}

fn line_of(needle: &str, text: &str) -> u64 {
    text.lines().position(|l| l.contains(needle)).unwrap() as u64 + 1
}

#[test]
fn shipped_config_is_valid() {
    let c = Config::load(&repo_config()).unwrap();
    assert_eq!(c.profiles.len(), 3);
    assert_eq!(c.http.boot.port(), 4081);
    assert_eq!(c.http.api.port(), 4080);
}

#[test]
fn unknown_key_names_line_and_column() {
    let errs = variant("  domain: lab\n", "  domain: lab\n  colour: blue\n").unwrap_err();
    let text = std::fs::read_to_string(repo_config()).unwrap();
    let want_line = line_of("domain: lab", &text) + 1;
    assert_eq!(errs.0.len(), 1);
    let e = &errs.0[0];
    assert_eq!(e.line, want_line, "{e}");
    assert_eq!(e.column, 3, "{e}");
    assert!(e.message.contains("colour"), "{e}");
    assert!(e
        .to_string()
        .starts_with(&format!("{}:{want_line}:3:", repo_config().display())));
}

#[test]
fn bad_enum_value_says_what_is_allowed() {
    let errs = variant("mode: full", "mode: fullish").unwrap_err();
    let e = &errs.0[0];
    let text = std::fs::read_to_string(repo_config()).unwrap();
    assert_eq!(e.line, line_of("mode: full", &text), "{e}");
    assert!(e.message.contains("fullish"), "{e}");
    assert!(e.message.contains("proxy"), "{e}");
}

#[test]
fn semantic_errors_are_all_reported_with_locations() {
    let text = std::fs::read_to_string(repo_config()).unwrap();
    let broken = text
        .replacen(
            "range: [10.77.0.100, 10.77.0.200]",
            "range: [10.77.0.100, 10.78.0.200]\n    extra_ranges: [[10.77.0.150, 10.77.0.160]]",
            1,
        )
        .replacen("quantity: 10", "quantity: -2", 1)
        .replacen("- name: discovery", "- name: worker", 1)
        .replacen("image: discovery", "image: nosuchimage", 1)
        .replacen("ignition: worker.yaml", "ignition: missing.yaml", 1);
    let errs = Config::parse(&repo_config(), &broken).unwrap_err();
    let all = errs.to_string();
    let expect = [
        ("outside the subnet", "range: [10.77.0.100, 10.78.0.200]"),
        ("overlaps", "extra_ranges"),
        ("quantity -2 is negative", "quantity: -2"),
        ("duplicate profile name `worker`", "- name: worker"),
        ("image `nosuchimage`", "image: nosuchimage"),
        (
            "template `missing.yaml` not found",
            "ignition: missing.yaml",
        ),
    ];
    for (msg, line_text) in expect {
        let e = errs
            .0
            .iter()
            .find(|e| e.message.contains(msg))
            .unwrap_or_else(|| panic!("no `{msg}` in:\n{all}"));
        // duplicates: the second occurrence is the bad one
        let want = if msg.starts_with("duplicate") {
            broken
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains(line_text))
                .nth(1)
                .unwrap()
                .0 as u64
                + 1
        } else {
            line_of(line_text, &broken)
        };
        assert_eq!(e.line, want, "{msg}: {e}");
        assert!(e.column > 0, "{e}");
    }
}

#[test]
fn unknown_default_profile_is_refused() {
    let errs = variant("default_profile: discovery", "default_profile: nope").unwrap_err();
    assert!(
        errs.to_string()
            .contains("default_profile `nope` is not a profile"),
        "{errs}"
    );
}

#[test]
fn paths_are_absolute_and_normalised_at_load() {
    // The lab's layout: a config in scripts/ pointing at ../lab/tftproot. dnsmasq refuses every
    // TFTP path holding `/../`, so no configured path may carry one.
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let text = std::fs::read_to_string(repo_config()).unwrap();
    let text = text
        .replace("tftproot: tftproot", "tftproot: ../lab/./tftproot")
        .replace("inventory: inventory ", "inventory: ./../lab/inventory ")
        .replace(
            "images: images",
            &format!("images: {}/images", env!("CARGO_MANIFEST_DIR")),
        )
        .replace(
            "templates: templates",
            &format!(
                "templates: {}/templates/../templates",
                env!("CARGO_MANIFEST_DIR")
            ),
        )
        .replace(
            "  # tls: { cert: api.crt, key: api.key }",
            "  tls: { cert: ../tls/api.crt, key: api.key }",
        );
    let file = scripts.join("lab.yaml");
    std::fs::write(&file, &text).unwrap();
    // A relative config path, read from another working directory, gives the same paths.
    let c = Config::load(&file).unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(c.tftproot, root.join("lab/tftproot"));
    assert_eq!(c.inventory, root.join("lab/inventory"));
    assert_eq!(
        c.templates,
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates")
    );
    assert_eq!(c.logs, root.join("scripts/logs"));
    assert_eq!(c.tokens_file, root.join("scripts/tokens.json"));
    let tls = c.http.tls.as_ref().unwrap();
    assert_eq!(tls.cert, root.join("tls/api.crt"));
    assert_eq!(tls.key, root.join("scripts/api.key"));
    for p in [
        &c.tftproot,
        &c.inventory,
        &c.templates,
        &c.images,
        &c.logs,
        &c.runtime,
    ] {
        assert!(p.is_absolute(), "{} is not absolute", p.display());
        assert!(
            !p.components().any(|c| matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::CurDir
            )),
            "{} is not normalised",
            p.display()
        );
    }
}

#[test]
fn normalise_removes_dot_components() {
    use mayu::config::normalise;
    assert_eq!(normalise(Path::new("/a/b/../c/./d")), Path::new("/a/c/d"));
    assert_eq!(normalise(Path::new("/../x")), Path::new("/x"));
    assert_eq!(normalise(Path::new("/a/b/..")), Path::new("/a"));
}

/// The shipped config with a `cluster:` section (written before `templates_env:`).
fn with_cluster(section: &str) -> (String, Result<Config, mayu::config::ConfigErrors>) {
    let text = std::fs::read_to_string(repo_config()).unwrap();
    assert!(text.contains("\ntemplates_env:"));
    let text = text.replacen("\ntemplates_env:", &format!("\n{section}templates_env:"), 1);
    let parsed = Config::parse(&repo_config(), &text);
    (text, parsed)
}

#[test]
fn without_cluster_the_local_inventory_is_used() {
    assert_eq!(Config::load(&repo_config()).unwrap().cluster, None);
}

#[cfg(feature = "etcd")]
#[test]
fn a_cluster_section_is_checked_and_defaults_its_prefix() {
    let (_, parsed) = with_cluster(
        "cluster:\n  etcd: [http://10.0.0.11:2379, http://etcd-2.lab:2379, \"http://[fd00::3]:2379\"]\n  name: rack-a\n",
    );
    let c = parsed.unwrap().cluster.unwrap();
    assert_eq!(
        c.etcd,
        [
            "http://10.0.0.11:2379",
            "http://etcd-2.lab:2379",
            "http://[fd00::3]:2379"
        ]
    );
    assert_eq!(c.name, "rack-a");
    assert_eq!(c.prefix, "/mayu");
    assert_eq!(c.tls, None);
}

#[cfg(feature = "etcd")]
#[test]
fn cluster_tls_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca.crt", "rack-a.crt", "rack-a.key"] {
        std::fs::write(dir.path().join(f), "-----BEGIN X-----\n").unwrap();
    }
    let text = std::fs::read_to_string(repo_config()).unwrap().replacen(
        "\ntemplates_env:",
        "\ncluster:\n  etcd: [https://10.0.0.11:2379]\n  name: rack-a\n  prefix: /dc1/mayu\n  tls: { ca: ca.crt, cert: rack-a.crt, key: rack-a.key }\ntemplates_env:",
        1,
    );
    // templates and images must exist beside the config: point them at the repo's
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = text
        .replacen(
            "templates: templates",
            &format!("templates: {}/templates", repo.display()),
            1,
        )
        .replacen(
            "images: images",
            &format!("images: {}/images", repo.display()),
            1,
        );
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, &text).unwrap();
    let c = Config::load(&file)
        .unwrap_or_else(|e| panic!("{e}"))
        .cluster
        .unwrap();
    let here = std::fs::canonicalize(dir.path()).unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.ca, here.join("ca.crt"));
    assert_eq!(
        tls.identity,
        Some((here.join("rack-a.crt"), here.join("rack-a.key")))
    );
    assert_eq!(c.prefix, "/dc1/mayu");
}

#[test]
fn cluster_errors_are_located() {
    let section = "cluster:\n  etcd: [http://10.0.0.11:2379, ftp://10.0.0.12:2379, http://10.0.0.13, https://10.0.0.14:2379]\n  name: rack a\n  prefix: mayu/\n  tls: { ca: no-such-ca.crt, cert: rack-a.crt }\n";
    let (text, parsed) = with_cluster(section);
    let errs = parsed.unwrap_err();
    let all = errs.to_string();
    let line = |needle: &str| line_of(needle, &text);
    let expect = [
        (
            "`ftp://10.0.0.12:2379` is no http:// or https:// URL",
            line("etcd: ["),
        ),
        ("`http://10.0.0.13` has no port", line("etcd: [")),
        ("mixes http:// and https://", line("etcd: [")),
        ("cluster.name `rack a` may only hold", line("name: rack a")),
        (
            "cluster.prefix `mayu/` must start with `/`",
            line("prefix: mayu/"),
        ),
        ("cluster.tls.ca: no file", line("tls: { ca: no-such-ca.crt")),
        (
            "a client `cert` needs its `key` too",
            line("tls: { ca: no-such-ca.crt"),
        ),
    ];
    for (msg, want) in expect {
        let e = errs
            .0
            .iter()
            .find(|e| e.message.contains(msg))
            .unwrap_or_else(|| panic!("no `{msg}` in:\n{all}"));
        assert_eq!(e.line, want, "{msg}: {e}");
        assert!(e.column > 1, "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}:{want}:", repo_config().display())),
            "{e}"
        );
    }
    // the column points at the value itself
    let ftp = errs
        .0
        .iter()
        .find(|e| e.message.contains("ftp://"))
        .unwrap();
    let at = text.lines().nth(ftp.line as usize - 1).unwrap();
    assert_eq!(at.find("ftp://").unwrap() as u64 + 1, ftp.column, "{ftp}");

    let (text, parsed) = with_cluster("cluster:\n  etcd: []\n  name: rack-a\n");
    let errs = parsed.unwrap_err();
    let e = errs
        .0
        .iter()
        .find(|e| e.message.contains("name at least one endpoint"))
        .unwrap_or_else(|| panic!("{errs}"));
    assert_eq!(e.line, line_of("etcd: []", &text), "{e}");

    let (text, parsed) = with_cluster("cluster:\n  etcd: [http://10.0.0.11:2379]\n");
    let errs = parsed.unwrap_err();
    assert!(errs.to_string().contains("name"), "{errs}");
    assert!(errs.0[0].line >= line_of("cluster:", &text), "{errs}");

    let (_, parsed) = with_cluster(
        "cluster:\n  etcd: [https://10.0.0.11:2379]\n  name: rack-a\n  colour: blue\n",
    );
    assert!(parsed.unwrap_err().to_string().contains("colour"));
}

#[cfg(not(feature = "etcd"))]
#[test]
fn a_mayu_without_etcd_refuses_a_cluster_section() {
    let (text, parsed) =
        with_cluster("cluster:\n  etcd: [http://10.0.0.11:2379]\n  name: rack-a\n");
    let errs = parsed.unwrap_err();
    assert_eq!(errs.0.len(), 1, "{errs}");
    let e = &errs.0[0];
    assert!(
        e.message
            .contains("this mayu was built without etcd support (cargo feature `etcd`)"),
        "{e}"
    );
    let at = line_of("cluster:", &text);
    assert!(e.line == at || e.line == at + 1, "{e}");
    assert!(e.column > 0, "{e}");
}
