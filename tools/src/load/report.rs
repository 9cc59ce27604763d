//! The figures of a load run: one serialisable summary (`--json`), its table for people, and
//! the timeline behind `--plot`.

use std::fmt::Write;

use serde::Serialize;

use super::stats::Percentiles;

/// One second of the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub recv_packets_per_s: f64,
    pub recv_kbps: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
}

/// Every figure of a run. Field names are part of the JSON contract.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub url: String,
    pub rooms: usize,
    pub peers: usize,
    pub publishers: usize,
    pub signal_only: bool,
    pub duration_s: f64,
    pub peers_joined: usize,
    pub peers_failed: usize,
    /// Socket.IO connect → join acknowledged.
    pub join_ms: Percentiles,
    /// Per subscription: the subscriber offer that first listed a remote stream → the first
    /// packet of its first keyframe (runs without video: its first packet).
    pub first_frame_ms: Percentiles,
    /// Per packet, send → receive, matched by (publisher track, RTP sequence number).
    pub latency_ms: Percentiles,
    /// Media runs: every track of every other publisher in the room, per subscriber; and how
    /// many of them delivered at least one packet.
    pub subscriptions_expected: usize,
    pub subscriptions_started: usize,
    pub recv_packets: u64,
    /// Gaps in the received sequence numbers, plus every packet sent to a subscription that
    /// never started (while its subscriber was present).
    pub lost_packets: u64,
    pub loss_ratio: f64,
    /// Mean received bitrate per stream (publisher track at one subscriber).
    pub recv_kbps_per_stream: f64,
    pub recv_kbps_total: f64,
    /// Mean RFC 3550 interarrival jitter over streams.
    pub jitter_ms: f64,
    pub tool_cpu_s: f64,
    pub tool_cpu_us_per_recv_packet: Option<f64>,
    /// Signal-only runs: room chat message latency and the count lost.
    pub message_latency_ms: Option<Percentiles>,
    pub messages_lost: Option<u64>,
    /// Signal-only runs: server CPU per join (ms) and per delivered room message (µs), and
    /// whether it still answered after every client disconnected at once.
    pub server_join_cpu_ms: Option<f64>,
    pub server_cpu_us_per_message: Option<f64>,
    pub server_alive_after_mass_disconnect: Option<bool>,
    pub server_cpu_s: Option<f64>,
    pub server_forwarded_packets: Option<u64>,
    pub server_cpu_us_per_forwarded_packet: Option<f64>,
    pub server_rss_mib: Option<f64>,
    /// `--loss`: the percentage lost each way on the server's media port.
    pub loss_percent: Option<u8>,
    /// NACKs the subscribers sent (holes on the server's hop to them), and those the server
    /// sent its publishers with the packets it sent again (from `/metrics`).
    pub subscriber_nacks_sent: u64,
    pub server_nacks_sent: Option<u64>,
    pub server_retransmitted_packets: Option<u64>,
    /// `--simulcast` / `--cap-subscribers` runs: layers, freezes and loss per capped
    /// subscriber and for the rest.
    pub subscribers: Option<super::simulcast::SimulcastSummary>,
    pub timeline: Vec<TimelinePoint>,
}

impl Summary {
    /// A plain-text table of the headline figures.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let p = |p: &Percentiles| {
            format!(
                "p50 {:>8.1}  p95 {:>8.1}  p99 {:>8.1}  max {:>8.1}  (n={})",
                p.p50, p.p95, p.p99, p.max, p.count
            )
        };
        let opt = |v: Option<f64>, unit: &str| match v {
            Some(v) => format!("{v:.2} {unit}"),
            None => "n/a".to_string(),
        };
        let _ = writeln!(
            out,
            "sfu-lite load: {} peers ({} publishing) in {} room(s) against {} for {:.0} s",
            self.peers, self.publishers, self.rooms, self.url, self.duration_s
        );
        let mut rows: Vec<(&str, String)> = vec![
            (
                "peers joined / failed",
                format!("{} / {}", self.peers_joined, self.peers_failed),
            ),
            ("join time (ms)", p(&self.join_ms)),
        ];
        if !self.signal_only {
            rows.extend([
                (
                    "subscriptions",
                    format!(
                        "{} expected, {} started",
                        self.subscriptions_expected, self.subscriptions_started
                    ),
                ),
                ("first remote frame (ms)", p(&self.first_frame_ms)),
                ("packet latency (ms)", p(&self.latency_ms)),
                (
                    "packets received / lost",
                    format!(
                        "{} / {} (loss {:.3} %)",
                        self.recv_packets,
                        self.lost_packets,
                        self.loss_ratio * 100.0
                    ),
                ),
                (
                    "received bitrate",
                    format!(
                        "{:.0} kbit/s per stream, {:.0} kbit/s total",
                        self.recv_kbps_per_stream, self.recv_kbps_total
                    ),
                ),
                ("jitter", format!("{:.2} ms", self.jitter_ms)),
            ]);
            if self.loss_percent.is_some() || self.subscriber_nacks_sent > 0 {
                let opt_n = |v: Option<u64>| v.map_or("n/a".to_string(), |n| n.to_string());
                rows.push((
                    "loss recovery",
                    format!(
                        "link loss {} % each way; NACKs: {} by subscribers, {} by the server; \
                         server retransmissions {}",
                        self.loss_percent.unwrap_or(0),
                        self.subscriber_nacks_sent,
                        opt_n(self.server_nacks_sent),
                        opt_n(self.server_retransmitted_packets)
                    ),
                ));
            }
        }
        rows.extend([
            (
                "tool CPU",
                format!(
                    "{:.2} s, {} per received packet",
                    self.tool_cpu_s,
                    opt(self.tool_cpu_us_per_recv_packet, "µs")
                ),
            ),
            ("server CPU", opt(self.server_cpu_s, "s")),
            (
                "server CPU per forwarded packet",
                opt(self.server_cpu_us_per_forwarded_packet, "µs"),
            ),
            ("server RSS", opt(self.server_rss_mib, "MiB")),
        ]);
        let rows = rows.into_iter().chain(
            self.message_latency_ms
                .iter()
                .map(|m| ("message latency (ms)", p(m)))
                .chain(self.messages_lost.map(|n| ("messages lost", n.to_string())))
                .chain(
                    self.server_join_cpu_ms
                        .map(|v| ("server CPU per join", format!("{v:.3} ms"))),
                )
                .chain(
                    self.server_cpu_us_per_message
                        .map(|v| ("server CPU per delivered message", format!("{v:.1} µs"))),
                )
                .chain(self.server_alive_after_mass_disconnect.map(|ok| {
                    (
                        "alive after mass disconnect",
                        if ok { "yes" } else { "NO" }.to_string(),
                    )
                })),
        );
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<32} {value}");
        }
        if let Some(s) = &self.subscribers {
            s.write_table(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_contract_fields() {
        let s = Summary {
            peers_joined: 3,
            ..Default::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        for key in [
            "peers_joined",
            "peers_failed",
            "loss_ratio",
            "latency_ms",
            "join_ms",
            "first_frame_ms",
            "recv_packets",
            "subscriptions_expected",
            "subscriptions_started",
            "tool_cpu_s",
            "server_cpu_us_per_forwarded_packet",
            "server_rss_mib",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in ["p50", "p95", "p99", "max"] {
            assert!(v["latency_ms"].get(key).is_some());
        }
        assert!(s.table().contains("peers joined / failed"));
    }
}
