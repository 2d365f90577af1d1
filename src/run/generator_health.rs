//! The generator's own health in every report (issue 17): its CPU against
//! what it could use, how busy those CPUs were, its delay between the
//! kernel receiving a frame and chatload having it (`generator_delay`), and
//! whether it was saturated: a saturated generator makes the target look
//! slower than it is, or offers it less load than planned.
//!
//! "What it could use" is the smaller of the CPUs in the process's affinity
//! mask and its cgroup's CPU quota (`cpu.max`), not the machine's cores: a
//! generator pinned to one core of two, or given half a core by its
//! container, is judged against that. Saturated means any of:
//! - its CPU time above 85% of what it could use (runs over 5 s);
//! - `send_lag` p99 above 50 ms (users woke or sent late);
//! - the CPUs it could use were at least 90% busy over the run (every
//!   process counted) and `generator_delay` p99 was at least 1 ms: the
//!   machine, not chatload alone, kept it from reading on time;
//! - the delay rule of `[generator]` (p99 above its share of `ttfe` p50
//!   and above its floor), which also makes the run INVALID
//!   (`metrics/validity.rs`).
//!
//! Imports: `metrics`, `names`, `scenario`.

use std::time::Duration;

use crate::metrics::snapshot::GeneratorHealth;
use crate::metrics::Recorder;
use crate::names;
use crate::scenario::generator::Generator;

/// The process's CPU use above this share of what it could use is saturation.
const BUSY_SHARE: f64 = 0.85;
/// `send_lag` p99 above this (µs) is saturation.
const LATE_US: u64 = 50_000;
/// The usable CPUs at least this busy (all processes) ...
const MACHINE_BUSY: f64 = 0.90;
/// ... with `generator_delay` p99 at least this (µs) is saturation.
const DELAYED_US: u64 = 1_000;

/// The CPU figures taken when the users start.
#[derive(Debug, Clone, Default)]
pub(super) struct CpuStart {
    /// CPU seconds the process had used.
    pub process_s: Option<f64>,
    /// Busy and total jiffies of each usable CPU.
    cpus: Option<Vec<(u64, u64)>>,
}

impl CpuStart {
    pub fn now() -> CpuStart {
        CpuStart {
            process_s: process_cpu_s(),
            cpus: allowed_cpus().and_then(|c| cpu_jiffies(&c)),
        }
    }
}

/// CPU seconds (user + system) this process has used, on Linux.
pub(super) fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // The kernel reports in USER_HZ, 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

/// The CPUs in this process's affinity mask.
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&i| libc::CPU_ISSET(i, &set))
                .collect(),
        )
    }
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Option<Vec<usize>> {
    None
}

/// The cgroup (v2) CPU quota in CPUs: `cpu.max` "50000 100000" is 0.5.
fn cgroup_quota() -> Option<f64> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/cpu.max").ok()?;
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (period > 0.0).then_some(quota / period)
}

/// What the process could use, in CPUs.
fn usable_cpus() -> f64 {
    let mask = allowed_cpus().map(|c| c.len() as f64);
    let machine = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut usable = mask.unwrap_or(machine);
    if let Some(q) = cgroup_quota() {
        usable = usable.min(q);
    }
    usable
}

/// Busy and total jiffies of `cpus` from `/proc/stat`.
fn cpu_jiffies(cpus: &[usize]) -> Option<Vec<(u64, u64)>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut out = Vec::with_capacity(cpus.len());
    for &cpu in cpus {
        let label = format!("cpu{cpu} ");
        let line = stat.lines().find(|l| l.starts_with(&label))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guests are in user).
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        out.push((total - idle.min(total), total));
    }
    Some(out)
}

/// The share of the usable CPUs' time that was busy since `start`.
fn cpus_busy(start: &CpuStart) -> Option<f64> {
    let before = start.cpus.as_ref()?;
    let now = cpu_jiffies(&allowed_cpus()?)?;
    if now.len() != before.len() {
        return None;
    }
    let (busy, total) = now.iter().zip(before).fold((0u64, 0u64), |(b, t), (n, s)| {
        (b + n.0.saturating_sub(s.0), t + n.1.saturating_sub(s.1))
    });
    (total > 0).then(|| busy as f64 / total as f64)
}

/// The `q` quantile of `metric` (µs), when it has samples.
fn quantile(rec: &Recorder, metric: &str, q: f64) -> Option<u64> {
    rec.histograms
        .get(metric)
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(q))
}

/// The generator's health over a run of `elapsed`.
pub(super) fn health(
    start: &CpuStart,
    elapsed: Duration,
    rec: &Recorder,
    gen: &Generator,
) -> GeneratorHealth {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let usable = usable_cpus();
    let cpu_s = process_cpu_s().zip(start.process_s).map(|(a, b)| a - b);
    let send_lag_p99_us = quantile(rec, names::SEND_LAG, 0.99);
    let delay_p99 = quantile(rec, names::GENERATOR_DELAY, 0.99);
    let busy_cpus = cpus_busy(start);
    let secs = elapsed.as_secs_f64();
    let mut because = Vec::new();
    if cpu_s.is_some_and(|c| secs > 5.0 && c > BUSY_SHARE * usable * secs) {
        because.push(format!(
            "its CPU time was above {:.0}% of the {usable:.1} CPUs it could use",
            BUSY_SHARE * 100.0
        ));
    }
    if send_lag_p99_us.is_some_and(|l| l > LATE_US) {
        because.push(format!("send_lag p99 was above {} ms", LATE_US / 1000));
    }
    if busy_cpus.is_some_and(|b| b >= MACHINE_BUSY) && delay_p99.is_some_and(|d| d >= DELAYED_US) {
        because.push(format!(
            "the CPUs it could use were {:.0}% busy (all processes) and generator_delay p99 was {}",
            busy_cpus.unwrap_or(0.0) * 100.0,
            crate::units::format_us(delay_p99.unwrap_or(0) as f64)
        ));
    }
    if gen
        .max_delay
        .is_some_and(|l| crate::metrics::validity::delay_broken(rec, l))
    {
        because.push("generator_delay p99 broke the [generator] delay rule".to_string());
    }
    let runs = rec.counter(names::RUNS_OK) + rec.counter(names::RUNS_FAILED);
    let frames = rec.counter(names::BYTES_RECEIVED) > 0;
    let stamped = quantile(rec, names::GENERATOR_DELAY, 0.5).is_some();
    GeneratorHealth {
        cpu_s,
        cores,
        send_lag_p99_us,
        saturated: !because.is_empty(),
        saturated_by: because,
        usable_cpus: Some(usable),
        cpus_busy: busy_cpus,
        delay_p50_us: quantile(rec, names::GENERATOR_DELAY, 0.5),
        delay_p99_us: delay_p99,
        delay_p999_us: quantile(rec, names::GENERATOR_DELAY, 0.999),
        receive_times: Some(
            match (gen.kernel_timestamps, stamped, frames) {
                (false, _, _) => "user (kernel stamps off)",
                (true, true, _) => "kernel",
                (true, false, true) => "user (kernel stamps unavailable)",
                (true, false, false) => "none (no frame received)",
            }
            .to_string(),
        ),
        runs_per_s: (secs > 0.0).then(|| runs as f64 / secs),
        cpu_us_per_run: cpu_s.filter(|_| runs > 0).map(|c| c * 1e6 / runs as f64),
        clock_jumps: rec.counter(names::CLOCK_JUMPS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpus_and_their_times() {
        let cpus = allowed_cpus().expect("Linux tells the affinity mask");
        assert!(!cpus.is_empty());
        let j = cpu_jiffies(&cpus).expect("/proc/stat has a line per CPU");
        assert!(j.iter().all(|(busy, total)| busy <= total && *total > 0));
        assert!(usable_cpus() > 0.0 && usable_cpus() <= cpus.len() as f64);
    }
}
