//! Rendering a machine's iPXE script through the public template API (`Templates::render`: the
//! context built from the machine, then tera), next to baselines measured in the same run: the
//! context alone, and the same script's bytes produced by a plain `format!` (what a render can
//! at best cost). The numbers are per render on whatever machine runs it.
//!
//! Run: `cargo bench --bench render` (MAYU_BENCH_SECS overrides the 0.2 s per sample).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mayu::templates::{context, set, Kind, Templates};
use mayu::Config;

const SAMPLES: usize = 5;

/// Median nanoseconds per call of `f`, over SAMPLES samples of about `secs` each.
fn per_op(secs: f64, mut f: impl FnMut()) -> f64 {
    // Warm up and size a batch to about 1 ms.
    let mut batch = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        if t.elapsed() > Duration::from_millis(1) || batch > 1 << 20 {
            break;
        }
        batch *= 2;
    }
    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        let (mut n, t) = (0u64, Instant::now());
        while t.elapsed().as_secs_f64() < secs {
            for _ in 0..batch {
                f();
            }
            n += batch;
        }
        samples.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[SAMPLES / 2]
}

fn main() {
    let secs: f64 = std::env::var("MAYU_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.2);
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.path().join("images/flatcar")).expect("images");
    std::fs::create_dir_all(dir.path().join("templates")).expect("templates");
    for t in ["flatcar.ipxe", "discovery.ipxe"] {
        std::fs::copy(
            repo.join("templates").join(t),
            dir.path().join("templates").join(t),
        )
        .expect("copy template");
    }
    std::fs::write(
        dir.path().join("config.yaml"),
        "network: { address: 10.77.0.1, dhcp: { mode: off } }\n\
         audit: { git: false }\n\
         assignment: auto\n\
         profiles:\n\
         - { name: worker, image: flatcar, kernel_args: \"console=ttyS0\", env: { role: worker }, templates: { ipxe: flatcar.ipxe } }\n\
         - { name: discovery, image: flatcar, kernel_args: \"console=ttyS0\", templates: { ipxe: discovery.ipxe } }\n",
    )
    .expect("config");
    let config = Config::load(&dir.path().join("config.yaml")).expect("config");
    let templates = Templates::load(&config).expect("templates");
    let boot: SocketAddr = "10.77.0.1:4081".parse().expect("addr");

    println!("render/iPXE script for one machine, median of {SAMPLES} samples of {secs} s");
    for name in ["worker", "discovery"] {
        let profile = config.profile(name).expect("profile");
        let m = set::fixture(profile);
        let body = templates.render(boot, &m, Kind::Ipxe).expect("render");

        let render = per_op(secs, || {
            black_box(
                templates
                    .render(boot, black_box(&m), Kind::Ipxe)
                    .expect("render"),
            );
        });
        let ctx = per_op(secs, || {
            let _ = black_box(context::build(&config, boot, Some(profile), black_box(&m)));
        });
        // The floor: a script of the same shape from one format! over the machine's fields.
        let id = m.id.to_string();
        let base = format!("http://{boot}");
        let formatted = per_op(secs, || {
            let id = black_box(&id);
            black_box(format!(
                "#!ipxe\n# mayu: {p} for {id}\necho mayu: booting {id} into profile {p}\n\
                 kernel {base}/assets/{img}/vmlinuz?id={id} initrd=initrd.img mayu.url={base} \
                 mayu.id={id} {args}\ninitrd --name initrd.img {base}/assets/{img}/initrd.img?id={id}\nboot\n",
                p = profile.name,
                img = profile.image,
                args = profile.kernel_args,
            ));
        });
        println!("  profile {name} ({} bytes):", body.len());
        println!("    Templates::render           {render:10.0} ns");
        println!("    context::build alone        {ctx:10.0} ns");
        println!("    baseline: format! of it     {formatted:10.0} ns");
        println!(
            "    ratio: render is {:.1}x the format! baseline ({:.0}% of it building the context)",
            render / formatted.max(1e-9),
            100.0 * ctx / render.max(1e-9)
        );
    }
}
