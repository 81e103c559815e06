//! Bench: the CPU time of one sample of the default metric set.
//!
//! `cargo bench -p klaxon-agent --bench sample` takes 1,000 samples (the default
//! measurements, this host's mounts and interfaces) and prints the CPU time (user +
//! system, from /proc/self/stat) per sample.

use std::time::Duration;

use klaxon_agent::config::ValidConfig;
use klaxon_agent::metrics::sample::HostSampler;

const SAMPLES: u32 = 1000;

/// CPU seconds this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 =
        fields.get(11..13).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}

fn main() {
    let config = ValidConfig::parse(std::path::Path::new("default.toml"), "").expect("defaults");
    let plan = config.metrics.expect("metrics on by default").plan;
    let mut sampler = HostSampler::new(plan.options).expect("sampler");
    std::thread::sleep(Duration::from_millis(100));
    let before = cpu_seconds();
    let mut values = 0;
    for _ in 0..SAMPLES {
        values += std::hint::black_box(sampler.sample()).len();
    }
    let per_sample_ms = (cpu_seconds() - before) * 1000.0 / f64::from(SAMPLES);
    println!(
        "sample: {per_sample_ms:.3} ms of CPU per sample of the full set ({} values a sample), {SAMPLES} samples",
        values / SAMPLES as usize
    );
}
