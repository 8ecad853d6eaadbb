//! Engine throughput with the git audit on, against a temp inventory on this disk: new machines
//! registering (one thread, then several at once, into a quota profile), machines already known
//! asking again, operator assignments, and how long the audit takes to catch up — next to a
//! baseline measured in the same run and folder: this disk's durable single-thread write rate
//! (write + fsync + rename + directory fsync per file), the floor for one durable change.
//!
//! Run: `cargo bench --bench engine` (MAYU_BENCH_MACHINES overrides the 300 machines per step,
//! MAYU_BENCH_THREADS the 4 concurrent registering threads).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use mayu::engine::Registration;
use mayu::machine::{Mac, MachineId, Phase};
use mayu::{Config, Engine};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn fsync_dir(dir: &Path) {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
}

/// Durable single-thread writes per second: what one acknowledged change costs at least.
fn durable_rate(dir: &Path, n: usize) -> f64 {
    std::fs::create_dir_all(dir).expect("baseline dir");
    let body = vec![b'x'; 700];
    let t = Instant::now();
    for i in 0..n {
        let tmp = dir.join(format!(".m{i}.tmp"));
        let mut f = std::fs::File::create(&tmp).expect("create");
        f.write_all(&body).expect("write");
        f.sync_all().expect("fsync");
        drop(f);
        std::fs::rename(&tmp, dir.join(format!("m{i}.json"))).expect("rename");
        fsync_dir(dir);
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn mac(thread: u32, i: u32) -> Mac {
    let b = i.to_be_bytes();
    Mac::from_octets([0x0e, thread as u8, b[0], b[1], b[2], b[3]])
}

fn register(engine: &Engine, thread: u32, i: u32) {
    let reg = Registration {
        mac: Some(mac(thread, i)),
        serial: Some(format!("SN{thread:02}{i:07}")),
        arch: Some("x86_64".into()),
        ..Default::default()
    };
    engine.register(reg, Phase::Ipxe).expect("register");
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

fn main() {
    let n = env("MAYU_BENCH_MACHINES", 300) as u32;
    let threads = env("MAYU_BENCH_THREADS", 4) as u32;
    // On the disk (like an inventory), not a tmpfs: the fsyncs are the point.
    let dir = tempfile::Builder::new()
        .prefix("mayu-bench-engine")
        .tempdir_in(std::env::var_os("BENCH_TMPDIR").unwrap_or_else(|| "/var/tmp".into()))
        .expect("tempdir");
    std::fs::create_dir_all(dir.path().join("images/x")).expect("images");
    std::fs::create_dir_all(dir.path().join("templates")).expect("templates");
    std::fs::write(dir.path().join("templates/x.ipxe"), "#!ipxe\n").expect("template");
    std::fs::write(
        dir.path().join("config.yaml"),
        "network: { address: 10.77.0.1, dhcp: { mode: off } }\n\
         audit: { git: true }\n\
         assignment: auto\n\
         default_profile: discovery\n\
         profiles:\n\
         - { name: worker, quantity: 1000000, image: x, templates: { ipxe: x.ipxe } }\n\
         - { name: other, image: x, templates: { ipxe: x.ipxe } }\n\
         - { name: discovery, image: x, templates: { ipxe: x.ipxe } }\n",
    )
    .expect("config");
    let config = Config::load(&dir.path().join("config.yaml")).expect("config");

    let baseline = durable_rate(&dir.path().join("baseline"), n as usize);
    let engine = Engine::open(config).expect("open");

    // New machines, one thread.
    let t = Instant::now();
    for i in 0..n {
        register(&engine, 0, i);
    }
    let one = rate(n as usize, t.elapsed());

    // New machines, several threads at once.
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 1..=threads {
            let engine = &engine;
            s.spawn(move || {
                for i in 0..n / threads {
                    register(engine, th, i);
                }
            });
        }
    });
    let many = rate((n / threads * threads) as usize, t.elapsed());
    let t = Instant::now();
    engine.flush().expect("flush");
    let caught_up = t.elapsed();

    // Machines already known, asking again (nothing about them changed).
    let t = Instant::now();
    for i in 0..n {
        register(&engine, 0, i);
    }
    let known = rate(n as usize, t.elapsed());

    // Operator assignments (each one a durable change and an audit record).
    let t = Instant::now();
    for i in 0..n {
        let id = MachineId::from_mac(&mac(0, i)).to_string();
        engine.assign(&id, "other", "bench", false).expect("assign");
    }
    let assign = rate(n as usize, t.elapsed());
    let t = Instant::now();
    engine.flush().expect("flush");
    let caught_up_assign = t.elapsed();

    println!(
        "engine/{n} machines per step, git audit on, inventory in {:?}",
        dir.path()
    );
    println!("  baseline: durable single-thread writes   {baseline:9.0} /s");
    for (what, r) in [
        ("register new, 1 thread".to_string(), one),
        (format!("register new, {threads} threads"), many),
        ("register known, 1 thread".to_string(), known),
        ("assign, 1 thread".to_string(), assign),
    ] {
        println!(
            "  {what:<40} {r:9.0} /s  ({:.2}x the baseline)",
            r / baseline.max(1e-9)
        );
    }
    println!("  audit caught up after the registrations  {caught_up:?} (flush)");
    println!("  audit caught up after the assignments    {caught_up_assign:?} (flush)");
}
