//! Sampling the host: CPU, memory, swap, disks, disk I/O, network, load, processes, and
//! optionally named processes. Names and units follow the amazon-cloudwatch-agent.
//!
//! sysinfo supplies most figures. Two come from /proc directly, because sysinfo lacks
//! them or makes them costly: the CPU time split (user/system/iowait/idle, /proc/stat;
//! sysinfo gives only the overall usage) and the process count (the entries of /proc;
//! sysinfo would read every process's files to count them).

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sysinfo::{Disks, Networks, ProcessRefreshKind, ProcessesToUpdate, System};

/// CloudWatch units used by the agent's datums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Unit {
    Percent,
    Bytes,
    BytesPerSecond,
    Count,
    CountPerSecond,
    None,
}

/// One measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub unit: Unit,
    /// Dimensions besides the host's own (mount, interface, core, process).
    pub dimensions: Vec<(&'static str, String)>,
    pub value: f64,
}

/// What to sample besides the default set.
#[derive(Debug, Clone, Default)]
pub struct SampleOptions {
    /// Also one `cpu_usage_*` series per core.
    pub per_core: bool,
    /// File system types not reported (pseudo file systems).
    pub ignore_file_system_types: Vec<String>,
    /// Process names for `procstat_cpu_usage` and `procstat_memory_rss`.
    pub processes: Vec<String>,
}

/// CPU time counters of one line of /proc/stat.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTimes {
    user: u64,
    system: u64,
    idle: u64,
    iowait: u64,
    total: u64,
}

/// This system cannot be sampled (sysinfo does not support it).
#[derive(Debug, thiserror::Error)]
#[error("cannot sample this host: {0}")]
pub struct UnsupportedHost(sysinfo::Error);

/// Keeps what rates and percentages need between samples.
pub struct HostSampler {
    options: SampleOptions,
    system: System,
    disks: Disks,
    networks: Networks,
    cpu_before: HashMap<String, CpuTimes>,
    last_sample: Instant,
    /// Values that could not become datums (NaN, counters going backwards, unreadable).
    pub skipped: u64,
}

impl HostSampler {
    /// A sampler, or why this system cannot be sampled.
    pub fn new(options: SampleOptions) -> Result<Self, UnsupportedHost> {
        let unsupported = UnsupportedHost;
        Ok(HostSampler {
            options,
            system: System::new().map_err(unsupported)?,
            disks: Disks::new_with_refreshed_list().map_err(unsupported)?,
            networks: Networks::new_with_refreshed_list().map_err(unsupported)?,
            cpu_before: read_cpu_times(),
            last_sample: Instant::now(),
            skipped: 0,
        })
    }

    /// Takes one sample of everything.
    pub fn sample(&mut self) -> Vec<Sample> {
        let elapsed = self.last_sample.elapsed().as_secs_f64().max(0.001);
        self.last_sample = Instant::now();
        let mut out = Vec::with_capacity(64);
        self.cpu(&mut out);
        self.memory(&mut out);
        self.disks(elapsed, &mut out);
        self.network(elapsed, &mut out);
        if let Ok(load) = System::load_average() {
            push(&mut out, "load_1", Unit::None, vec![], load.one);
            push(&mut out, "load_5", Unit::None, vec![], load.five);
            push(&mut out, "load_15", Unit::None, vec![], load.fifteen);
        }
        match std::fs::read_dir("/proc") {
            Ok(entries) => {
                let count = entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
                    .count();
                push(&mut out, "processes_total", Unit::Count, vec![], count as f64);
            }
            Err(_) => self.skipped += 1,
        }
        self.processes(&mut out);
        let before = out.len();
        out.retain(|sample| sample.value.is_finite());
        self.skipped += (before - out.len()) as u64;
        out
    }

    fn cpu(&mut self, out: &mut Vec<Sample>) {
        let now = read_cpu_times();
        if now.is_empty() {
            self.skipped += 1;
        }
        for (name, times) in &now {
            let whole = name == "cpu";
            if !whole && !self.options.per_core {
                continue;
            }
            let Some(before) = self.cpu_before.get(name) else { continue };
            let Some(delta) = times.since(before) else {
                self.skipped += 1;
                continue;
            };
            let share = |part: u64| 100.0 * part as f64 / delta.total as f64;
            let dimensions = if whole {
                vec![("cpu", "cpu-total".to_owned())]
            } else {
                vec![("cpu", name.clone())]
            };
            let idle = share(delta.idle);
            let iowait = share(delta.iowait);
            push(out, "cpu_usage_active", Unit::Percent, dimensions.clone(), 100.0 - idle - iowait);
            push(out, "cpu_usage_user", Unit::Percent, dimensions.clone(), share(delta.user));
            push(out, "cpu_usage_system", Unit::Percent, dimensions.clone(), share(delta.system));
            push(out, "cpu_usage_iowait", Unit::Percent, dimensions.clone(), iowait);
            push(out, "cpu_usage_idle", Unit::Percent, dimensions, idle);
        }
        self.cpu_before = now;
    }

    fn memory(&mut self, out: &mut Vec<Sample>) {
        self.system.refresh_memory();
        let total = self.system.total_memory() as f64;
        let available = self.system.available_memory() as f64;
        let used = total - available;
        push(out, "mem_used_percent", Unit::Percent, vec![], 100.0 * used / total);
        push(out, "mem_used", Unit::Bytes, vec![], used);
        push(out, "mem_available", Unit::Bytes, vec![], available);
        let swap_total = self.system.total_swap() as f64;
        let swap_used = self.system.used_swap() as f64;
        let swap_percent = if swap_total > 0.0 { 100.0 * swap_used / swap_total } else { 0.0 };
        push(out, "swap_used_percent", Unit::Percent, vec![], swap_percent);
    }

    fn disks(&mut self, elapsed: f64, out: &mut Vec<Sample>) {
        self.disks.refresh(true);
        for disk in &self.disks {
            let fstype = disk.file_system().to_string_lossy().into_owned();
            if self.options.ignore_file_system_types.contains(&fstype) {
                continue;
            }
            let path = disk.mount_point().display().to_string();
            let device = disk.name().to_string_lossy().trim_start_matches("/dev/").to_owned();
            let total = disk.total_space() as f64;
            let free = disk.available_space() as f64;
            let dimensions = vec![("path", path), ("device", device.clone()), ("fstype", fstype)];
            if total > 0.0 {
                let used_percent = 100.0 * (total - free) / total;
                push(out, "disk_used_percent", Unit::Percent, dimensions.clone(), used_percent);
                push(out, "disk_free", Unit::Bytes, dimensions, free);
            }
            let usage = disk.usage();
            let name = vec![("name", device)];
            let read_rate = usage.read_bytes as f64 / elapsed;
            let write_rate = usage.written_bytes as f64 / elapsed;
            push(out, "diskio_read_bytes", Unit::BytesPerSecond, name.clone(), read_rate);
            push(out, "diskio_write_bytes", Unit::BytesPerSecond, name, write_rate);
        }
    }

    fn network(&mut self, elapsed: f64, out: &mut Vec<Sample>) {
        self.networks.refresh(true);
        for (interface, data) in &self.networks {
            if interface == "lo" {
                continue;
            }
            let dimensions = vec![("interface", interface.to_string_lossy().into_owned())];
            let rate = |value: u64| value as f64 / elapsed;
            let figures = [
                ("net_bytes_sent", Unit::BytesPerSecond, data.transmitted()),
                ("net_bytes_recv", Unit::BytesPerSecond, data.received()),
                ("net_packets_sent", Unit::CountPerSecond, data.packets_transmitted()),
                ("net_packets_recv", Unit::CountPerSecond, data.packets_received()),
                ("net_err_in", Unit::CountPerSecond, data.errors_on_received()),
                ("net_err_out", Unit::CountPerSecond, data.errors_on_transmitted()),
            ];
            for (name, unit, value) in figures {
                push(out, name, unit, dimensions.clone(), rate(value));
            }
        }
    }

    fn processes(&mut self, out: &mut Vec<Sample>) {
        if self.options.processes.is_empty() {
            return;
        }
        let kind = ProcessRefreshKind::nothing().with_cpu().with_memory();
        self.system.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
        for wanted in &self.options.processes {
            let (mut cpu, mut rss) = (0.0, 0.0);
            for process in self.system.processes().values() {
                if process.name().to_string_lossy() == wanted.as_str() {
                    cpu += f64::from(process.cpu_usage());
                    rss += process.memory() as f64;
                }
            }
            let dimensions = vec![("exe", wanted.clone())];
            push(out, "procstat_cpu_usage", Unit::Percent, dimensions.clone(), cpu);
            push(out, "procstat_memory_rss", Unit::Bytes, dimensions, rss);
        }
    }
}

fn push(
    out: &mut Vec<Sample>,
    name: &'static str,
    unit: Unit,
    dimensions: Vec<(&'static str, String)>,
    value: f64,
) {
    out.push(Sample { name, unit, dimensions, value });
}

impl CpuTimes {
    /// The time spent between `before` and now; None when a counter went backwards.
    fn since(&self, before: &CpuTimes) -> Option<CpuTimes> {
        let delta = CpuTimes {
            user: self.user.checked_sub(before.user)?,
            system: self.system.checked_sub(before.system)?,
            idle: self.idle.checked_sub(before.idle)?,
            iowait: self.iowait.checked_sub(before.iowait)?,
            total: self.total.checked_sub(before.total)?,
        };
        (delta.total > 0).then_some(delta)
    }
}

/// The `cpu` and `cpuN` lines of /proc/stat.
fn read_cpu_times() -> HashMap<String, CpuTimes> {
    std::fs::read_to_string("/proc/stat").map(|text| parse_cpu_times(&text)).unwrap_or_default()
}

fn parse_cpu_times(text: &str) -> HashMap<String, CpuTimes> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|line| line.starts_with("cpu")) {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        let numbers: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        if numbers.len() < 8 {
            continue;
        }
        let times = CpuTimes {
            user: numbers[0] + numbers[1],
            system: numbers[2] + numbers[5] + numbers[6],
            idle: numbers[3],
            iowait: numbers[4],
            total: numbers[..8].iter().sum(),
        };
        out.insert(name.to_owned(), times);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_come_from_proc_stat_deltas() {
        let before = parse_cpu_times("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 0 1 1 1 0 0 0\n");
        let after = parse_cpu_times("cpu  160 0 70 880 90 0 0 0 0 0\n");
        let delta = after["cpu"].since(&before["cpu"]).expect("delta");
        assert_eq!(
            (delta.user, delta.system, delta.idle, delta.iowait, delta.total),
            (60, 20, 80, 40, 200)
        );
        let backwards = before["cpu"].since(&after["cpu"]);
        assert!(backwards.is_none(), "a counter that went backwards is no datum");
    }

    #[test]
    fn a_sample_has_the_default_set_with_finite_values() {
        let mut sampler = HostSampler::new(SampleOptions {
            ignore_file_system_types: vec!["tmpfs".into(), "overlay".into()],
            ..SampleOptions::default()
        })
        .expect("Linux can be sampled");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let samples = sampler.sample();
        for name in [
            "cpu_usage_active",
            "mem_used_percent",
            "swap_used_percent",
            "load_1",
            "processes_total",
        ] {
            assert!(samples.iter().any(|s| s.name == name), "{name} missing");
        }
        assert!(samples.iter().all(|s| s.value.is_finite()));
        let memory = samples.iter().find(|s| s.name == "mem_used_percent").expect("memory");
        assert!((0.0..=100.0).contains(&memory.value));
        assert!(samples.iter().all(|s| !s.dimensions.iter().any(|(_, v)| v == "lo")));
    }
}
