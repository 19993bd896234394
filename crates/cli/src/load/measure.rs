//! What the load commands measure: a process's CPU time and memory from /proc, the
//! server's `/metrics`, and percentiles.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

/// Raises the soft open-file limit to the hard one (many sockets, one process).
pub(crate) fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Resident memory of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS"))
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p` quantile of sorted microseconds, in milliseconds.
pub(crate) fn pct(sorted: &[u64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p) as usize).map_or(0.0, |d| *d as f64 / 1000.0)
}

/// The server's `/metrics` and CPU time at one moment.
pub(crate) struct Scrape {
    pub(crate) at: Instant,
    pub(crate) cpu_ticks: u64,
    text: String,
}

impl Scrape {
    pub(crate) async fn take(server: &str, pid: u32) -> Scrape {
        let at = Instant::now();
        let cpu_ticks = cpu_ticks(pid).unwrap_or(0);
        let text = get_metrics(server).await.unwrap_or_default();
        Scrape { at, cpu_ticks, text }
    }

    /// The sum over shards (and other labels) of metric `name` with every label in
    /// `labels`; a metric without labels counts when `labels` is empty.
    pub(crate) fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        self.text
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} "),
                    None => Some(("", rest.strip_prefix(' ')?)),
                }
            })
            .filter(|(l, _)| labels.iter().all(|want| l.split(',').any(|have| have == *want)))
            .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
            .sum()
    }
}

async fn get_metrics(server: &str) -> Result<String> {
    // Over https when the spawned server speaks TLS (its CA trusted through SSL_CERT_FILE).
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    Ok(client.get(format!("{server}/metrics")).send().await?.error_for_status()?.text().await?)
}

/// CPU time (user + system) of a process, from /proc, in clock ticks (1/100 s).
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc stat")?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    Ok(f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
}
