//! CPU time and resident memory of a process, read from `/proc` (Linux).
//!
//! Used for the server's own `process_*` metrics and by the load tester (its own cost and,
//! with `--server-pid`, the server's).

use std::time::Duration;

/// One reading of a process's accounting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// User + system CPU time consumed so far.
    pub cpu: Duration,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when the process is gone or not Linux.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text, clock_ticks(), page_size())
}

/// The calling process.
pub fn sample_self() -> Option<ProcSample> {
    sample(std::process::id())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// Parses the stat line. The command name (field 2) may hold spaces and parentheses, so fields
/// are counted from the last `)`.
fn parse_stat(text: &str, ticks_per_s: u64, page: u64) -> Option<ProcSample> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 → index 0; utime 14 → 11; stime 15 → 12; rss 24 → 21.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    Some(ProcSample {
        cpu: Duration::from_secs_f64((utime + stime) as f64 / ticks_per_s as f64),
        rss_bytes: rss_pages * page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_name() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 \
                    7 0 100 123456789 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1";
        let s = parse_stat(line, 100, 4096).unwrap();
        assert_eq!(s.cpu, Duration::from_secs(3));
        assert_eq!(s.rss_bytes, 2560 * 4096);
    }

    #[test]
    fn reads_own_process() {
        let s = sample_self().expect("linux /proc");
        assert!(s.rss_bytes > 0);
    }
}
