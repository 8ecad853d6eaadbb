//! Start-up with 10,000 machine files: how long `Engine::open` takes to load and index them,
//! next to a baseline measured in the same run (reading the same files' bytes and nothing
//! else), so the number means something on whatever machine runs it.
//!
//! Run: `cargo bench --bench startup` (MAYU_BENCH_MACHINES overrides the count).

use std::path::Path;
use std::time::{Duration, Instant};

use mayu::inventory::files;
use mayu::machine::{Mac, Machine, MachineId, State};
use mayu::{Config, Engine};

const RUNS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn write_fixture(dir: &Path, n: u32) {
    let inv = dir.join("inventory");
    std::fs::create_dir_all(&inv).expect("inventory dir");
    let now = time::OffsetDateTime::now_utc();
    for i in 0..n {
        let b = i.to_be_bytes();
        let mac = Mac::from_octets([0x52, 0x54, b[0], b[1], b[2], b[3]]);
        let mut m = Machine::new(MachineId::from_mac(&mac), format!("token{i}"), now);
        m.macs.push(mac);
        m.serial = Some(format!("SN{i:06}"));
        m.profile = Some(if i % 2 == 0 { "worker" } else { "discovery" }.into());
        m.state = State::Running;
        m.hostname = Some(format!("node-{i}"));
        std::fs::write(
            files::machine_path(&inv, &m.id),
            files::encode(&m).expect("encode"),
        )
        .expect("write");
    }
    std::fs::create_dir_all(dir.join("images/x")).expect("images");
    std::fs::create_dir_all(dir.join("templates")).expect("templates");
    std::fs::write(dir.join("templates/x.ipxe"), "#!ipxe\n").expect("template");
    std::fs::write(
        dir.join("config.yaml"),
        "network: { address: 10.77.0.1, dhcp: { mode: off } }\n\
         audit: { git: false }\n\
         assignment: auto\n\
         default_profile: discovery\n\
         profiles:\n\
         - { name: worker, image: x, templates: { ipxe: x.ipxe } }\n\
         - { name: discovery, image: x, templates: { ipxe: x.ipxe } }\n",
    )
    .expect("config");
}

fn main() {
    let n: u32 = std::env::var("MAYU_BENCH_MACHINES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("tempdir");
    write_fixture(dir.path(), n);
    let config = Config::load(&dir.path().join("config.yaml")).expect("config");

    let mut baseline = Vec::new();
    let mut open = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let mut bytes = 0usize;
        for e in std::fs::read_dir(dir.path().join("inventory")).expect("read_dir") {
            bytes += std::fs::read(e.expect("entry").path()).expect("read").len();
        }
        std::hint::black_box(bytes);
        baseline.push(t.elapsed());

        let t = Instant::now();
        let engine = Engine::open(config.clone()).expect("open");
        assert_eq!(engine.len(), n as usize);
        open.push(t.elapsed());
    }
    let (b, o) = (median(baseline), median(open));
    println!("startup/{n} machines: Engine::open median {o:?} over {RUNS} runs");
    println!("baseline/{n} files: read bytes only, median {b:?}");
    println!(
        "ratio: {:.1}x the bare file reads",
        o.as_secs_f64() / b.as_secs_f64().max(1e-9)
    );
}
