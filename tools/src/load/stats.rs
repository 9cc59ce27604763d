//! Pure measurement state of a load run: send-time logs, per-stream sequence tracking (loss,
//! jitter, bitrate) and percentile summaries. No I/O, no clocks of its own: callers pass times
//! in, so every piece is unit-testable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The run's clock origin: every send and receive time is measured from it.
pub fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds from [`epoch`] to `at` (0 for instants before it).
pub fn since_epoch_ns(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Send times of the recent packets of one published track, by RTP sequence number.
///
/// The load tool owns both ends of every stream, so latency is measured on one clock by
/// looking up the send time of the received (track, sequence number). Each of the 4,096 slots
/// holds `time << 16 | seq`, so a lookup is one atomic load that also tells whether the slot
/// still belongs to that sequence number: no hashing, locking or allocation per packet, and
/// 32 KiB per track however long the run.
pub struct SendLog {
    slots: Box<[AtomicU64]>,
}

const SEND_SLOTS: usize = 4096;

impl Default for SendLog {
    fn default() -> Self {
        Self {
            slots: (0..SEND_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for SendLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SendLog")
    }
}

impl SendLog {
    /// `sent_ns`: nanoseconds since the run's epoch (under 2^47, about 39 hours).
    pub fn record(&self, seq: u16, sent_ns: u64) {
        // `| 1` keeps a real entry distinct from an empty slot; 1 ns of error is irrelevant.
        let v = ((sent_ns | 1) << 16) | seq as u64;
        self.slots[seq as usize % SEND_SLOTS].store(v, Ordering::Relaxed);
    }

    /// Latency in microseconds of packet `seq` received at `recv_ns`, if its send is still
    /// logged and at most `max_ns` old.
    pub fn latency_us(&self, seq: u16, recv_ns: u64, max_ns: u64) -> Option<u64> {
        let v = self.slots[seq as usize % SEND_SLOTS].load(Ordering::Relaxed);
        if v == 0 || v as u16 != seq {
            return None;
        }
        let delta = recv_ns.checked_sub(v >> 16)?;
        (delta <= max_ns).then_some(delta / 1000)
    }
}

/// Sequence numbers remembered per stream to tell a duplicate (a packet retransmitted twice)
/// from a first arrival.
const DEDUP_WINDOW: u64 = 1024;

/// Loss, jitter and volume of one received stream (one publisher track at one subscriber).
///
/// Loss is counted over a window of sequence numbers: from the first received to the newest
/// when [`StreamStats::close_window`] is called. Packets of that window that arrive later (a
/// retransmission still on its way) still count; newer ones and duplicates do not, so a
/// recovered packet is never counted as lost for arriving after the report, nor twice.
#[derive(Debug, Default, Clone)]
pub struct StreamStats {
    /// Extended sequence numbers, offset by 2^16 so a packet older than the first is positive.
    first_ext_seq: Option<u64>,
    max_ext_seq: u64,
    /// The window's last sequence number, once closed.
    cutoff: Option<u64>,
    /// Bit `ext % DEDUP_WINDOW` set when `ext` (within the window below `max_ext_seq`) arrived.
    seen: Vec<u64>,
    pub received: u64,
    pub bytes: u64,
    /// RFC 3550 interarrival jitter, in RTP timestamp units (scaled by 16 as in the RFC).
    jitter16: u64,
    last_transit: Option<i64>,
    /// Arrival of the latest packet and the longest pause between two, in RTP clock units.
    last_arrival: Option<u64>,
    max_gap: u64,
}

impl StreamStats {
    /// Records a packet. `arrival_rtp` is the arrival time expressed in the stream's RTP clock.
    /// False when it does not count: a duplicate, older than the first, or after the window.
    pub fn on_packet(
        &mut self,
        seq: u16,
        rtp_ts: u32,
        arrival_rtp: u64,
        payload_len: usize,
    ) -> bool {
        if self.seen.is_empty() {
            self.seen = vec![0; (DEDUP_WINDOW / 64) as usize];
        }
        let ext = match self.first_ext_seq {
            None => {
                let ext = seq as u64 + (1 << 16);
                self.first_ext_seq = Some(ext);
                self.max_ext_seq = ext;
                ext
            }
            Some(_) => {
                // The nearest extension of `seq` to the newest: a late packet just before a
                // wrap is not a whole cycle ahead.
                let delta = seq.wrapping_sub(self.max_ext_seq as u16) as i16 as i64;
                (self.max_ext_seq as i64 + delta).max(0) as u64
            }
        };
        if ext > self.max_ext_seq {
            if ext - self.max_ext_seq >= DEDUP_WINDOW {
                self.seen.fill(0);
            } else {
                for e in self.max_ext_seq + 1..=ext {
                    self.set_seen(e, false);
                }
            }
            self.max_ext_seq = ext;
        }
        let in_window = ext >= self.first_ext_seq.unwrap_or(ext)
            && self.cutoff.is_none_or(|c| ext <= c)
            && self.max_ext_seq - ext < DEDUP_WINDOW;
        if !in_window || self.is_seen(ext) {
            return false;
        }
        self.set_seen(ext, true);
        self.received += 1;
        self.bytes += payload_len as u64;
        let transit = arrival_rtp as i64 - rtp_ts as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs();
            // J += (|D| - J) / 16, kept scaled by 16.
            self.jitter16 = self.jitter16 + d - (self.jitter16 >> 4);
        }
        self.last_transit = Some(transit);
        if let Some(last) = self.last_arrival {
            self.max_gap = self.max_gap.max(arrival_rtp.saturating_sub(last));
        }
        self.last_arrival = Some(
            self.last_arrival
                .map_or(arrival_rtp, |l| l.max(arrival_rtp)),
        );
        true
    }

    /// The longest pause between two arrivals, in RTP timestamp units: for synthetic video
    /// (one packet per frame) the longest freeze a viewer saw.
    pub fn max_gap(&self) -> u64 {
        self.max_gap
    }

    fn set_seen(&mut self, ext: u64, on: bool) {
        let i = (ext % DEDUP_WINDOW) as usize;
        let bit = 1u64 << (i % 64);
        if on {
            self.seen[i / 64] |= bit;
        } else {
            self.seen[i / 64] &= !bit;
        }
    }

    fn is_seen(&self, ext: u64) -> bool {
        let i = (ext % DEDUP_WINDOW) as usize;
        self.seen[i / 64] & (1u64 << (i % 64)) != 0
    }

    /// Ends the counted window at the newest packet so far; late packets of it still count.
    pub fn close_window(&mut self) {
        if self.first_ext_seq.is_some() {
            self.cutoff.get_or_insert(self.max_ext_seq);
        }
    }

    /// Packets the sequence numbers say were sent in the window.
    pub fn expected(&self) -> u64 {
        self.first_ext_seq
            .map(|first| self.cutoff.unwrap_or(self.max_ext_seq) + 1 - first)
            .unwrap_or(0)
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter16 as f64 / 16.0
    }
}

/// p50/p95/p99/max of a set of samples, in the unit they were recorded in.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// A histogram of integer samples (µs, ms) from 1 up to one hour in µs, 3 significant digits;
/// larger values are clamped to the top rather than lost.
pub struct Samples(Histogram<u64>);

impl Default for Samples {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"))
    }
}

impl Samples {
    pub fn record(&mut self, value: u64) {
        self.0.saturating_record(value);
    }

    pub fn merge(&mut self, other: &Samples) {
        let _ = self.0.add(&other.0);
    }

    /// Percentiles divided by `scale` (e.g. 1000.0 to turn µs into ms).
    pub fn percentiles(&self, scale: f64) -> Percentiles {
        if self.0.is_empty() {
            return Percentiles::default();
        }
        let q = |q: f64| self.0.value_at_quantile(q) as f64 / scale;
        Percentiles {
            count: self.0.len(),
            p50: q(0.50),
            p95: q(0.95),
            p99: q(0.99),
            max: self.0.max() as f64 / scale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_log_measures_latency_and_ignores_stale_slots() {
        let log = SendLog::default();
        log.record(7, 1_000_000);
        assert_eq!(log.latency_us(7, 3_500_001, 1_000_000_000), Some(2_500));
        assert_eq!(log.latency_us(8, 3_500_000, 1_000_000_000), None);
        assert_eq!(log.latency_us(7, 5_000_000_000, 1_000_000_000), None);
        // A later packet in the same slot replaces the older one.
        log.record(7 + 4096, 2_000_001);
        assert_eq!(log.latency_us(7, 3_500_000, 1_000_000_000), None);
        assert_eq!(
            log.latency_us(7 + 4096, 3_000_001, 1_000_000_000),
            Some(1_000)
        );
    }

    #[test]
    fn stream_counts_loss_across_sequence_wrap() {
        let mut s = StreamStats::default();
        for seq in [65533u16, 65534, 65535, 1, 2] {
            s.on_packet(seq, 0, 0, 100);
        }
        assert_eq!(s.received, 5);
        assert_eq!(s.expected(), 6);
        assert_eq!(s.lost(), 1);
        assert_eq!(s.bytes, 500);
    }

    #[test]
    fn a_late_packet_from_before_a_wrap_is_not_a_cycle_ahead() {
        let mut s = StreamStats::default();
        // 65534 is lost, then retransmitted after the wrap.
        for seq in [65533u16, 65535, 0, 1, 65534, 2] {
            s.on_packet(seq, 0, 0, 1);
        }
        assert_eq!(s.expected(), 6);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn reordered_packet_is_not_loss() {
        let mut s = StreamStats::default();
        for seq in [10u16, 12, 11, 13] {
            s.on_packet(seq, 0, 0, 1);
        }
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn late_packet_across_the_wrap_is_not_a_cycle_ahead() {
        let mut s = StreamStats::default();
        for seq in [65534u16, 0, 1, 65535, 2] {
            s.on_packet(seq, 0, 0, 1);
        }
        assert_eq!((s.expected(), s.lost()), (5, 0));
    }

    #[test]
    fn a_retransmission_after_the_window_counts_and_a_duplicate_does_not() {
        let mut s = StreamStats::default();
        for seq in [10u16, 11, 13] {
            assert!(s.on_packet(seq, 0, 0, 1));
        }
        s.close_window();
        assert!(!s.on_packet(14, 0, 0, 1), "after the window");
        assert!(s.on_packet(12, 0, 0, 1), "late, inside the window");
        assert!(!s.on_packet(12, 0, 0, 1), "duplicate");
        assert_eq!((s.expected(), s.received, s.lost()), (4, 4, 0));
    }

    #[test]
    fn jitter_is_zero_for_perfect_pacing_and_grows_with_variation() {
        let mut s = StreamStats::default();
        for i in 0..50u32 {
            s.on_packet(i as u16, i * 3000, i as u64 * 3000 + 500, 1);
        }
        assert_eq!(s.jitter(), 0.0);
        for i in 50..100u32 {
            let wobble = if i % 2 == 0 { 900 } else { 0 };
            s.on_packet(i as u16, i * 3000, i as u64 * 3000 + wobble, 1);
        }
        assert!(s.jitter() > 100.0, "{}", s.jitter());
    }

    #[test]
    fn longest_pause_between_arrivals() {
        let mut s = StreamStats::default();
        for (i, at) in [0u64, 3000, 6000, 96_000, 99_000].into_iter().enumerate() {
            s.on_packet(i as u16, 0, at, 1);
        }
        assert_eq!(s.max_gap(), 90_000);
        assert_eq!(StreamStats::default().max_gap(), 0);
    }

    #[test]
    fn percentiles_of_samples() {
        let mut h = Samples::default();
        for v in 1..=100 {
            h.record(v * 1000);
        }
        let p = h.percentiles(1000.0);
        assert_eq!(p.count, 100);
        assert!((p.p50 - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99 - 99.0).abs() < 0.2, "{p:?}");
        assert!((p.max - 100.0).abs() < 0.2, "{p:?}");
        assert_eq!(Samples::default().percentiles(1.0), Percentiles::default());
    }
}
