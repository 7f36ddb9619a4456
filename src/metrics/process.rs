//! This process's own figures, read from the kernel when sampled: resident
//! memory, open file descriptors and CPU time.

use nix::sys::resource::{getrusage, UsageWho};

/// One reading; a figure the kernel would not give is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    pub rss_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// User and system CPU time, in microseconds.
    pub cpu_micros: Option<u64>,
}

/// Reads the figures now.
pub(crate) fn sample() -> Sample {
    Sample {
        rss_bytes: rss_bytes(),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            // The directory's own fd, open while it is read, is not counted.
            .map(|entries| entries.count().saturating_sub(1) as u64),
        cpu_micros: getrusage(UsageWho::RUSAGE_SELF).ok().map(|usage| {
            let micros =
                |t: nix::sys::time::TimeVal| (t.tv_sec() as u64) * 1_000_000 + t.tv_usec() as u64;
            micros(usage.user_time()) + micros(usage.system_time())
        }),
    }
}

/// `VmRSS` of /proc/self/status, in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_gives_every_figure() {
        let sample = super::sample();
        assert!(sample.rss_bytes.is_some_and(|b| b > 1 << 20), "{sample:?}");
        assert!(sample.open_fds.is_some_and(|n| n >= 3), "{sample:?}");
        assert!(sample.cpu_micros.is_some(), "{sample:?}");
    }
}
