//! Process-wide counters and gauges, rendered at `/metrics` in Prometheus text format.
//!
//! Plain atomics: every hot-path update is one relaxed `fetch_add`, and nothing here locks.
//! Gauges that track owned resources (PeerConnections, tasks) are moved by RAII guards, so a
//! count cannot drift when an owner ends on an unusual path.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

macro_rules! metrics {
    (
        gauges { $($g:ident : $gh:literal,)* }
        counters { $($c:ident : $ch:literal,)* }
    ) => {
        /// All metrics of one server.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(pub $g: AtomicI64,)*
            $(pub $c: AtomicU64,)*
            /// Connections by the type of the remote candidate ICE selected.
            pub candidate_types: CandidateTypes,
        }

        impl Metrics {
            /// Prometheus text exposition format, version 0.0.4.
            pub fn render(&self) -> String {
                let mut out = String::with_capacity(4096);
                $(
                    let _ = writeln!(out, "# HELP sfu_{} {}", stringify!($g), $gh);
                    let _ = writeln!(out, "# TYPE sfu_{} gauge", stringify!($g));
                    let _ = writeln!(out, "sfu_{} {}", stringify!($g), self.$g.load(Ordering::Relaxed));
                )*
                render_process(&mut out);
                $(
                    let _ = writeln!(out, "# HELP sfu_{}_total {}", stringify!($c), $ch);
                    let _ = writeln!(out, "# TYPE sfu_{}_total counter", stringify!($c));
                    let _ = writeln!(out, "sfu_{}_total {}", stringify!($c), self.$c.load(Ordering::Relaxed));
                )*
                self.candidate_types.render(&mut out);
                out
            }

            /// Every gauge by name, for tests that check counts return to zero.
            pub fn gauges(&self) -> Vec<(&'static str, i64)> {
                vec![$((stringify!($g), self.$g.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

metrics! {
    gauges {
        sockets: "Connected Socket.IO sockets, all namespaces.",
        rooms: "Rooms with at least one member.",
        participants: "Participants joined to a room.",
        peer_connections: "Open server-side PeerConnections.",
        published_tracks: "Tracks received from publishers.",
        subscriptions: "Forwarded (publisher track, subscriber) pairs.",
        tasks: "Live media tasks (track readers, subscriber writers, RTCP readers, timers).",
        relay_connections: "Open TCP connections to the embedded TURN relay.",
        cluster_redis_up: "1 while this cluster node reaches Redis (always 0 on a single node).",
    }
    counters {
        signaling_events: "Socket.IO events received.",
        signaling_refused: "Socket.IO events refused with an error.",
        signaling_dropped: "Socket.IO events dropped without an answer (floods).",
        forwarded_packets: "RTP packets written towards subscribers.",
        forwarded_bytes: "RTP payload bytes written towards subscribers.",
        dropped_packets: "RTP packets dropped because a subscriber queue was full (for video: up to the next keyframe).",
        video_resyncs: "Times a full queue cut a subscriber's video; each waits for the next keyframe and asks the publisher for one.",
        media_send_errors: "Media UDP sends that failed with a per-packet error (EPERM, ENOBUFS, EAGAIN, ICMP errors), counted as lost packets.",
        nacks_received: "Generic NACK packets received from subscribers.",
        nacks_sent: "Generic NACK packets sent to publishers (packets missing on their hop).",
        retransmitted_packets: "RTP packets sent again because a subscriber NACKed them.",
        plis_sent: "Keyframe requests (PLI) sent to publishers.",
        plis_received: "PLI/FIR received from subscribers.",
    }
}

/// The standard Prometheus process metrics, so a scraper (or `sfu-lite load`) can relate CPU
/// time to forwarded packets without access to the server's process id.
fn render_process(out: &mut String) {
    if let Some(p) = crate::procstat::sample_self() {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds."
        );
        let _ = writeln!(out, "# TYPE process_cpu_seconds_total counter");
        let _ = writeln!(out, "process_cpu_seconds_total {}", p.cpu.as_secs_f64());
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes."
        );
        let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
        let _ = writeln!(out, "process_resident_memory_bytes {}", p.rss_bytes);
    }
}

/// Reads one sample's value from Prometheus text (no labels), e.g. `sfu_rooms`.
pub fn scrape_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// Server-side PeerConnections that reached `connected`, by the type of the remote candidate
/// in the selected pair: `host` (direct), `srflx`/`prflx` (direct through a NAT; a browser's
/// NATed address first seen in a check is `prflx`), `relay` (through TURN). The client's relay
/// shows as `relay` when it sent that candidate, `prflx` when the check arrived first.
#[derive(Debug, Default)]
pub struct CandidateTypes([AtomicU64; 5]);

impl CandidateTypes {
    const NAMES: [&'static str; 5] = ["host", "srflx", "prflx", "relay", "unknown"];

    /// Counts one connection whose remote candidate type is `kind` ("host", "srflx", ...).
    pub fn count(&self, kind: &str) {
        let i = Self::NAMES.iter().position(|n| *n == kind).unwrap_or(4);
        inc(&self.0[i]);
    }

    pub fn get(&self, kind: &str) -> u64 {
        Self::NAMES
            .iter()
            .position(|n| *n == kind)
            .map_or(0, |i| self.0[i].load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String) {
        let name = "sfu_connections_by_candidate_type_total";
        let _ = writeln!(
            out,
            "# HELP {name} PeerConnections that connected, by the remote candidate type of the selected pair."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for (kind, n) in Self::NAMES.iter().zip(&self.0) {
            let _ = writeln!(
                out,
                "{name}{{type=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

/// Holds one unit of a gauge for as long as it lives.
#[derive(Debug)]
pub struct GaugeGuard {
    metrics: Arc<Metrics>,
    gauge: fn(&Metrics) -> &AtomicI64,
}

impl GaugeGuard {
    pub fn new(metrics: &Arc<Metrics>, gauge: fn(&Metrics) -> &AtomicI64) -> Self {
        gauge(metrics).fetch_add(1, Ordering::Relaxed);
        Self {
            metrics: metrics.clone(),
            gauge,
        }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics).fetch_sub(1, Ordering::Relaxed);
    }
}

/// Adds one to a counter.
#[inline]
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_moves_gauge_and_render_names_it() {
        let m = Metrics::new();
        {
            let _g = GaugeGuard::new(&m, |m| &m.tasks);
            assert!(m.render().contains("sfu_tasks 1\n"));
        }
        inc(&m.forwarded_packets);
        let text = m.render();
        assert!(text.contains("sfu_tasks 0\n"));
        assert!(text.contains("sfu_forwarded_packets_total 1\n"));
        assert!(m.gauges().iter().all(|(_, v)| *v == 0));
        assert_eq!(
            scrape_value(&text, "sfu_forwarded_packets_total"),
            Some(1.0)
        );
        assert_eq!(scrape_value(&text, "sfu_forwarded_packets"), None);
        assert!(scrape_value(&text, "process_resident_memory_bytes").unwrap() > 0.0);
    }
}
