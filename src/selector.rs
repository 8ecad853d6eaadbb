//! Profile selectors: conditions on machine facts such as `memory_gib: ">=64"` or `disks: ">=2"`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::machine::Machine;

/// The facts a selector may test, with whether they compare as numbers.
const KEYS: &[(&str, bool)] = &[
    ("memory_gib", true),
    ("cpus", true),
    ("disks", true),
    ("disk_gib", true),
    ("nics", true),
    ("arch", false),
    ("vendor", false),
    ("product", false),
    ("serial", false),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Num(Op, f64),
    /// case-insensitive match with `*` as a wildcard.
    Text(String),
}

/// All conditions must hold for a machine to match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    conds: BTreeMap<String, Cond>,
    source: BTreeMap<String, String>,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .source
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

fn parse_num(expr: &str) -> Result<Cond, String> {
    let e = expr.trim();
    let (op, rest) = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("!=", Op::Ne),
        ("==", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("=", Op::Eq),
    ]
    .iter()
    .find_map(|(p, op)| e.strip_prefix(p).map(|r| (*op, r)))
    .unwrap_or((Op::Eq, e));
    rest.trim()
        .parse::<f64>()
        .map(|n| Cond::Num(op, n))
        .map_err(|_| format!("`{expr}` is not a comparison; use e.g. \">=8\", \"<4\" or \"2\""))
}

impl Selector {
    pub fn parse(map: BTreeMap<String, String>) -> Result<Selector, String> {
        let mut conds = BTreeMap::new();
        for (k, v) in &map {
            let Some((_, numeric)) = KEYS.iter().find(|(name, _)| name == k) else {
                let allowed: Vec<_> = KEYS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown selector fact `{k}`; allowed: {}",
                    allowed.join(", ")
                ));
            };
            let cond = if *numeric {
                parse_num(v).map_err(|e| format!("selector `{k}`: {e}"))?
            } else {
                Cond::Text(v.to_lowercase())
            };
            conds.insert(k.clone(), cond);
        }
        Ok(Selector { conds, source: map })
    }

    /// A machine without the fact a condition needs does not match.
    pub fn matches(&self, m: &Machine) -> bool {
        self.conds.iter().all(|(k, c)| match c {
            Cond::Num(op, n) => numeric_fact(m, k).is_some_and(|v| compare(*op, v, *n)),
            Cond::Text(pat) => text_fact(m, k).is_some_and(|v| glob(pat, &v.to_lowercase())),
        })
    }
}

fn numeric_fact(m: &Machine, key: &str) -> Option<f64> {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let f = &m.facts;
    match key {
        "memory_gib" => f.memory_bytes.map(|b| b as f64 / GIB),
        "cpus" => f.cpus.map(f64::from),
        "disks" => Some(f.disks.len() as f64),
        "disk_gib" => f
            .disks
            .iter()
            .map(|d| d.size_bytes as f64 / GIB)
            .reduce(f64::max),
        "nics" => Some(f.nics.len().max(m.macs.len()) as f64),
        _ => None,
    }
}

fn text_fact(m: &Machine, key: &str) -> Option<String> {
    match key {
        "arch" => m.arch.clone(),
        "vendor" => m.facts.vendor.clone(),
        "product" => m.facts.product.clone(),
        "serial" => m.serial.clone(),
        _ => None,
    }
}

fn compare(op: Op, v: f64, n: f64) -> bool {
    match op {
        Op::Ge => v >= n,
        Op::Gt => v > n,
        Op::Le => v <= n,
        Op::Lt => v < n,
        Op::Eq => (v - n).abs() < f64::EPSILON,
        Op::Ne => (v - n).abs() >= f64::EPSILON,
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pat: &str, s: &str) -> bool {
    match pat.split_once('*') {
        None => pat == s,
        Some((head, tail)) => {
            let Some(rest) = s.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        let map = raw
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect();
        Selector::parse(map).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("dell*", "dell inc."));
        assert!(glob("*edge*", "poweredge r640"));
        assert!(!glob("hp*", "dell"));
    }

    #[test]
    fn unknown_key_is_refused() {
        let mut m = BTreeMap::new();
        m.insert("ram".to_string(), ">=8".to_string());
        let e = Selector::parse(m).unwrap_err();
        assert!(e.contains("unknown selector fact `ram`"), "{e}");
    }
}
