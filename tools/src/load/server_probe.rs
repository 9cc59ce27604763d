//! The server's side of the figures: CPU time, RSS and forwarded packets, read from its
//! `/metrics` (and from `/proc/<pid>` when `--server-pid` is given, which wins for CPU and RSS).
//! On a cluster, every node given by `--url` is read, and every process given by
//! `--server-pid` (its Redis too): the figures are their sums.

use std::time::Duration;

use crate::metrics::scrape_value;

/// One reading of the server.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerSample {
    pub cpu_s: Option<f64>,
    pub rss_bytes: Option<f64>,
    pub forwarded_packets: Option<f64>,
    /// NACKs the server sent its publishers, and packets it sent again for its subscribers.
    pub nacks_sent: Option<f64>,
    pub retransmitted_packets: Option<f64>,
}

pub struct ServerProbe {
    metrics_urls: Vec<String>,
    pids: Vec<u32>,
    http: reqwest::Client,
}

impl ServerProbe {
    pub fn new(base_urls: &[&str], pids: &[u32]) -> Self {
        let mut metrics_urls: Vec<String> = base_urls
            .iter()
            .map(|u| format!("{}/metrics", u.trim_end_matches('/')))
            .collect();
        metrics_urls.dedup();
        Self {
            metrics_urls,
            pids: pids.to_vec(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                // Self-signed development servers are the common https case for a load run.
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap_or_default(),
        }
    }

    /// `None` when neither `/metrics` nor the process can be read.
    pub async fn sample(&self) -> Option<ServerSample> {
        let mut s = ServerSample::default();
        for url in &self.metrics_urls {
            let text = match self.http.get(url).send().await {
                Ok(r) if r.status().is_success() => r.text().await.ok(),
                _ => None,
            };
            if let Some(text) = &text {
                add(
                    &mut s.cpu_s,
                    scrape_value(text, "process_cpu_seconds_total"),
                );
                add(
                    &mut s.rss_bytes,
                    scrape_value(text, "process_resident_memory_bytes"),
                );
                add(
                    &mut s.forwarded_packets,
                    scrape_value(text, "sfu_forwarded_packets_total"),
                );
                add(
                    &mut s.nacks_sent,
                    scrape_value(text, "sfu_nacks_sent_total"),
                );
                add(
                    &mut s.retransmitted_packets,
                    scrape_value(text, "sfu_retransmitted_packets_total"),
                );
            }
        }
        let procs: Vec<_> = self
            .pids
            .iter()
            .filter_map(|p| crate::procstat::sample(*p))
            .collect();
        if !procs.is_empty() {
            s.cpu_s = Some(procs.iter().map(|p| p.cpu.as_secs_f64()).sum());
            s.rss_bytes = Some(procs.iter().map(|p| p.rss_bytes as f64).sum());
        }
        (s != ServerSample::default()).then_some(s)
    }
}

/// Sums a figure over several servers; one that lacks it adds nothing.
fn add(total: &mut Option<f64>, value: Option<f64>) {
    if let Some(v) = value {
        *total = Some(total.unwrap_or(0.0) + v);
    }
}

impl super::report::Summary {
    /// Fills the server figures from readings at the start and end of the steady state.
    pub fn apply_server(&mut self, start: &ServerSample, end: &ServerSample) {
        let cpu = end.cpu_s.zip(start.cpu_s).map(|(b, a)| b - a);
        let fwd = end
            .forwarded_packets
            .zip(start.forwarded_packets)
            .map(|(b, a)| b - a);
        self.server_cpu_s = cpu;
        self.server_forwarded_packets = fwd.map(|f| f as u64);
        self.server_cpu_us_per_forwarded_packet = cpu
            .zip(fwd)
            .filter(|(_, f)| *f > 0.0)
            .map(|(c, f)| c * 1e6 / f);
        self.server_rss_mib = end.rss_bytes.map(|b| b / (1024.0 * 1024.0));
        let delta = |b: Option<f64>, a: Option<f64>| b.zip(a).map(|(b, a)| (b - a) as u64);
        self.server_nacks_sent = delta(end.nacks_sent, start.nacks_sent);
        self.server_retransmitted_packets =
            delta(end.retransmitted_packets, start.retransmitted_packets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::report::Summary;

    #[test]
    fn cpu_per_forwarded_packet_from_two_readings() {
        let a = ServerSample {
            cpu_s: Some(10.0),
            rss_bytes: Some(1.0),
            forwarded_packets: Some(1000.0),
            ..ServerSample::default()
        };
        let b = ServerSample {
            cpu_s: Some(10.5),
            rss_bytes: Some(64.0 * 1024.0 * 1024.0),
            forwarded_packets: Some(51_000.0),
            ..ServerSample::default()
        };
        let mut s = Summary::default();
        s.apply_server(&a, &b);
        assert_eq!(s.server_forwarded_packets, Some(50_000));
        assert!((s.server_cpu_us_per_forwarded_packet.unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(s.server_rss_mib, Some(64.0));
        // No packets forwarded: no per-packet figure rather than a division by zero.
        s.apply_server(&a, &a);
        assert_eq!(s.server_cpu_us_per_forwarded_packet, None);
    }
}
