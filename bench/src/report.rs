//! How the sections print what they measured: memory read from /proc, sizes and times in a
//! fixed form, and one `goal |` line per goal, which `scripts/bench.sh` gathers into its
//! summary at the end.

use std::time::Duration;

use anyhow::Context;

/// A process's memory, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Resident now (VmRSS).
    pub rss: u64,
    /// The most it was resident (VmHWM).
    pub peak: u64,
    /// Anonymous resident memory (heap, instances' written pages); the rest of `rss` is
    /// file-backed (mapped code and artifacts).
    pub anon: u64,
    /// Memory mappings (the kernel allows `vm.max_map_count` per process).
    pub maps: usize,
}

impl Memory {
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("process {pid} is gone"))?;
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        Ok(Self {
            rss: kib_field(&status, "VmRSS:").context("no VmRSS")?,
            peak: kib_field(&status, "VmHWM:").context("no VmHWM")?,
            anon: kib_field(&rollup, "Anonymous:").unwrap_or(0),
            maps: maps.lines().count(),
        })
    }

    pub fn file(&self) -> u64 {
        self.rss.saturating_sub(self.anon)
    }
}

/// A `Name:   123 kB` field of a /proc file, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// The largest `vm.max_map_count` lets a process map.
pub fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}

/// With a decimal, for figures per function.
pub fn mib_f(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / f64::from(1 << 20))
}

pub fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Thousands separated, as BENCHMARKS.md writes counts.
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One goal of issue 13: what, the goal, the figure measured, the baseline of the same run, and
/// whether it is met.
pub fn goal(what: &str, goal: &str, figure: &str, baseline: &str, met: bool) {
    let verdict = if met { "met" } else { "not met" };
    println!("goal | {what} | {goal} | {figure} | {baseline} | {verdict}");
}

/// The median of some durations (none: zero).
pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(1), "1");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(100_000), "100,000");
    }

    #[test]
    fn proc_fields_are_read_in_bytes() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(1 << 20));
        assert_eq!(kib_field(status, "VmHWM:"), Some(2 << 20));
        assert_eq!(kib_field(status, "VmSwap:"), None);
    }
}
