//! Ignition's own validation rules, applied to rendered Ignition before it is served.
//!
//! The `ignition-config` crate parses and checks the schema (versions, field types, unknown
//! keys) but not the rules Ignition enforces on a machine at boot, where a violation means the
//! machine halts in the initramfs. These are those rules, with Ignition's messages (from
//! `config/shared/errors` and the `Validate` methods of `config/v3_*/types` in
//! coreos/ignition): paths absolute and clean, modes in range, URL schemes Ignition fetches,
//! hashes it understands, systemd unit and drop-in names, filesystems and disks, and no two
//! entries for the same thing.

use std::collections::HashSet;

use serde_json::Value;

/// One broken rule, located by its JSON path (`storage.files[1].path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub at: String,
    pub message: &'static str,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

const UNIT_SUFFIXES: [&str; 12] = [
    ".service",
    ".socket",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".target",
    ".path",
    ".timer",
    ".snapshot",
    ".slice",
    ".scope",
];
const SCHEMES: [&str; 7] = ["http", "https", "tftp", "s3", "gs", "arn", "data"];
const FORMATS: [&str; 6] = ["ext4", "btrfs", "xfs", "vfat", "swap", "none"];

/// Every rule `config` breaks (empty: Ignition accepts it).
pub fn validate(config: &Value) -> Vec<Violation> {
    let mut v = Rules::default();
    let storage = &config["storage"];
    let mut nodes = HashSet::new();
    for kind in ["files", "directories", "links"] {
        for (i, node) in items(&storage[kind]) {
            let at = format!("storage.{kind}[{i}]");
            let path = node["path"].as_str();
            v.path(&format!("{at}.path"), path, true);
            if let Some(p) = path {
                if !nodes.insert(p.to_string()) {
                    v.push(&format!("{at}.path"), "found duplicate entry");
                }
            }
            v.mode(&format!("{at}.mode"), &node["mode"]);
            if kind == "files" {
                v.resource(&format!("{at}.contents"), &node["contents"]);
                for (j, r) in items(&node["append"]) {
                    v.resource(&format!("{at}.append[{j}]"), r);
                }
            }
            if kind == "links" && node["target"].as_str().is_none_or(str::is_empty) {
                v.push(&format!("{at}.target"), "link target is required");
            }
        }
    }
    let mut devices = HashSet::new();
    for (i, disk) in items(&storage["disks"]) {
        let at = format!("storage.disks[{i}].device");
        v.path(&at, disk["device"].as_str(), true);
        if let Some(d) = disk["device"].as_str() {
            if !devices.insert(d.to_string()) {
                v.push(&at, "found duplicate entry");
            }
        }
        for (j, part) in items(&disk["partitions"]) {
            if part["label"]
                .as_str()
                .is_some_and(|l| l.chars().count() > 36)
            {
                v.push(
                    &format!("storage.disks[{i}].partitions[{j}].label"),
                    "partition labels may not exceed 36 characters",
                );
            }
        }
    }
    for (i, fs) in items(&storage["filesystems"]) {
        let at = format!("storage.filesystems[{i}]");
        v.path(&format!("{at}.device"), fs["device"].as_str(), true);
        v.path(&format!("{at}.path"), fs["path"].as_str(), false);
        if let Some(f) = fs["format"].as_str() {
            if !FORMATS.contains(&f) {
                v.push(&format!("{at}.format"), "invalid filesystem format");
            }
        }
    }
    let mut units = HashSet::new();
    for (i, unit) in items(&config["systemd"]["units"]) {
        let at = format!("systemd.units[{i}].name");
        let name = unit["name"].as_str().unwrap_or_default();
        if !UNIT_SUFFIXES
            .iter()
            .any(|s| name.ends_with(s) && name.len() > s.len())
        {
            v.push(&at, "invalid systemd unit extension");
        }
        if !units.insert(name.to_string()) {
            v.push(&at, "found duplicate entry");
        }
        if let Some(text) = unit["contents"].as_str() {
            v.unit_text(&format!("systemd.units[{i}].contents"), text);
        }
        for (j, dropin) in items(&unit["dropins"]) {
            let at = format!("systemd.units[{i}].dropins[{j}]");
            if !dropin["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(".conf"))
            {
                v.push(&format!("{at}.name"), "invalid systemd drop-in extension");
            }
            if let Some(text) = dropin["contents"].as_str() {
                v.unit_text(&format!("{at}.contents"), text);
            }
        }
    }
    for kind in ["users", "groups"] {
        let mut names = HashSet::new();
        for (i, entry) in items(&config["passwd"][kind]) {
            let at = format!("passwd.{kind}[{i}].name");
            match entry["name"].as_str() {
                None | Some("") => v.push(&at, "a name is required"),
                Some(n) if !names.insert(n.to_string()) => v.push(&at, "found duplicate entry"),
                Some(_) => {}
            }
        }
    }
    for (i, r) in items(&config["ignition"]["config"]["merge"]) {
        v.resource(&format!("ignition.config.merge[{i}]"), r);
    }
    v.resource(
        "ignition.config.replace",
        &config["ignition"]["config"]["replace"],
    );
    v.0
}

fn items(list: &Value) -> impl Iterator<Item = (usize, &Value)> {
    list.as_array().into_iter().flatten().enumerate()
}

#[derive(Default)]
struct Rules(Vec<Violation>);

impl Rules {
    fn push(&mut self, at: &str, message: &'static str) {
        self.0.push(Violation {
            at: at.to_string(),
            message,
        });
    }

    /// Ignition's `validatePath`: required (when `required`), absolute, and equal to its
    /// cleaned form.
    fn path(&mut self, at: &str, path: Option<&str>, required: bool) {
        match path {
            None | Some("") if required => self.push(at, "path is required"),
            None | Some("") => {}
            Some(p) if !p.starts_with('/') => self.push(at, "path not absolute"),
            Some(p) if clean(p) != p => self.push(at, "path is not fully simplified"),
            Some(_) => {}
        }
    }

    fn mode(&mut self, at: &str, mode: &Value) {
        if let Some(m) = mode.as_i64() {
            if !(0..=0o7777).contains(&m) {
                self.push(at, "illegal file mode");
            }
        }
    }

    /// A resource's `source` URL scheme and its `verification.hash`.
    fn resource(&mut self, at: &str, r: &Value) {
        if let Some(source) = r["source"].as_str().filter(|s| !s.is_empty()) {
            match source.split_once(':') {
                Some((scheme, _)) if SCHEMES.contains(&scheme) => {
                    if scheme == "data" && !source.contains(',') {
                        self.push(&format!("{at}.source"), "unable to parse data url");
                    }
                }
                _ => self.push(&format!("{at}.source"), "invalid url scheme"),
            }
        }
        if let Some(hash) = r["verification"]["hash"].as_str() {
            let at = format!("{at}.verification.hash");
            match hash.split_once('-') {
                None => self.push(&at, "malformed hash specifier"),
                Some((algo, sum)) => {
                    let len = match algo {
                        "sha512" => 128,
                        "sha256" => 64,
                        _ => {
                            self.push(&at, "unrecognized hash function");
                            return;
                        }
                    };
                    if sum.len() != len || !sum.chars().all(|c| c.is_ascii_hexdigit()) {
                        self.push(&at, "hash does not match the expected length");
                    }
                }
            }
        }
    }

    /// The shape systemd's unit parser accepts: sections, `key=value` lines, comments,
    /// continuation lines; the first line that is none of these is an error.
    fn unit_text(&mut self, at: &str, text: &str) {
        let mut continued = false;
        let mut in_section = false;
        for line in text.lines() {
            let t = line.trim();
            let ok = if continued || t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                true
            } else if t.starts_with('[') {
                in_section = t.ends_with(']');
                in_section
            } else {
                in_section && t.contains('=')
            };
            if !ok {
                self.push(
                    at,
                    "invalid unit content: a line is neither a section nor key=value",
                );
                return;
            }
            continued = t.ends_with('\\');
        }
    }
}

/// Go's `path.Clean` for absolute paths: no empty, `.` or `..` components, no trailing slash.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(config: Value) -> Vec<String> {
        validate(&config).iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn a_good_config_passes() {
        let config = json!({
            "ignition": {"version": "3.3.0"},
            "storage": {
                "files": [{"path": "/etc/hostname", "mode": 420,
                           "contents": {"source": "data:,node1",
                                        "verification": {"hash": format!("sha512-{}", "a".repeat(128))}}}],
                "directories": [{"path": "/var/lib/mayu"}],
                "links": [{"path": "/etc/localtime", "target": "/usr/share/zoneinfo/UTC"}],
                "disks": [{"device": "/dev/sda", "partitions": [{"label": "ROOT"}]}],
                "filesystems": [{"device": "/dev/sda1", "format": "ext4", "path": "/var"}]
            },
            "systemd": {"units": [{"name": "a.service", "enabled": true,
                                   "contents": "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true \\\n  --flag\n",
                                   "dropins": [{"name": "10-x.conf", "contents": "[Service]\nEnvironment=A=1\n"}]}]},
            "passwd": {"users": [{"name": "core"}]}
        });
        assert_eq!(messages(config), Vec::<String>::new());
    }

    #[test]
    fn relative_and_dirty_paths_are_refused_as_ignition_does() {
        let config = json!({
            "storage": {
                "files": [{"path": "etc/hostname"}, {"path": "/etc//x/../hosts"}],
                "directories": [{"path": "/etc/hostname"}, {"path": "/srv/"}],
                "links": [{"path": "/l"}]
            }
        });
        assert_eq!(
            messages(config),
            vec![
                "storage.files[0].path: path not absolute",
                "storage.files[1].path: path is not fully simplified",
                "storage.directories[1].path: path is not fully simplified",
                "storage.links[0].target: link target is required",
            ]
        );
        let dup = json!({"storage": {"files": [{"path": "/a"}], "links": [{"path": "/a", "target": "/b"}]}});
        assert_eq!(
            messages(dup),
            vec!["storage.links[0].path: found duplicate entry"]
        );
    }

    #[test]
    fn modes_urls_hashes_units_and_users() {
        let config = json!({
            "storage": {"files": [{"path": "/a", "mode": 0o10000,
                                   "contents": {"source": "ftp://x/y",
                                                "verification": {"hash": "md5-abc"}}},
                                  {"path": "/b", "contents": {"source": "https://x/y",
                                                "verification": {"hash": "sha256-abc"}}}],
                        "filesystems": [{"device": "sda1", "format": "ntfs"}]},
            "systemd": {"units": [{"name": "noext"}, {"name": "a.service", "contents": "ExecStart=/bin/x"},
                                  {"name": "b.service", "dropins": [{"name": "x.txt"}]}]},
            "passwd": {"users": [{"name": "core"}, {"name": "core"}]}
        });
        assert_eq!(
            messages(config),
            vec![
                "storage.files[0].mode: illegal file mode",
                "storage.files[0].contents.source: invalid url scheme",
                "storage.files[0].contents.verification.hash: unrecognized hash function",
                "storage.files[1].contents.verification.hash: hash does not match the expected length",
                "storage.filesystems[0].device: path not absolute",
                "storage.filesystems[0].format: invalid filesystem format",
                "systemd.units[0].name: invalid systemd unit extension",
                "systemd.units[1].contents: invalid unit content: a line is neither a section nor key=value",
                "systemd.units[2].dropins[0].name: invalid systemd drop-in extension",
                "passwd.users[1].name: found duplicate entry",
            ]
        );
    }
}
