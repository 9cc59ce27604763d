//! A subscriber's downlink estimate, shared by all of its subscriptions. Pure: feedback and
//! `now` in, bits per second out.
//!
//! Two inputs, either or both:
//! - what arrived of what was sent, from the client's RTCP receiver reports (or from
//!   transport-wide feedback, should a TWCC sender ever number our packets; see
//!   `transport.rs` for why it does not now): the loss-based controller of GCC (draft-ietf-rmcat-gcc §6). Over windows of at
//!   least `WINDOW` and `MIN_PACKETS`: loss above 10 % cuts the estimate to what actually got
//!   through (`sent rate · (1 − p)`, GCC's `A·(1 − p/2)` when nothing was sent), which finds a
//!   capped link in one window and stays there while it is overdriven; loss under 2 % raises it, 8 %/s at first, faster the longer the link
//!   stays clean (no probing exists in this server, so the only way back up after a cap is
//!   lifted is to try), up to `max_bps`; in between it holds.
//! - REMB from a browser (when `goog-remb` is negotiated): a congestion signal, not a ceiling.
//!   A browser's REMB comes from its delay-based estimator, whose value never exceeds about
//!   1.5 × what it receives (its AIMD bound) and starts low: as a ceiling it held a large
//!   tile on the lowest layer, since the layer it allowed never let it grow (measured with
//!   Chromium). It falls only when the receiver sees queues build, so a REMB that *falls*
//!   below what we send cuts the estimate to it, as heavy loss does.

use std::time::{Duration, Instant};

/// The shortest feedback window the loss controller judges.
const WINDOW: Duration = Duration::from_millis(500);
/// Fewer packets than this in a window say nothing about loss.
const MIN_PACKETS: u32 = 10;
/// A REMB this much below the previous one is the receiver's overuse decrease (Chromium cuts
/// to 0.85 × what it receives); smaller wobbles are not.
const REMB_FALL: f64 = 0.95;

/// Increase per second after `clean` seconds without loss: 8 %, then 20 % after 4 s, 40 %
/// after 8 s.
fn growth_per_sec(clean: Duration) -> f64 {
    match clean.as_secs() {
        0..=3 => 0.08,
        4..=7 => 0.20,
        _ => 0.40,
    }
}

#[derive(Debug, Clone)]
pub struct Estimator {
    bps: f64,
    min_bps: f64,
    max_bps: f64,
    window_start: Option<(Instant, u64)>,
    received: u32,
    total: u32,
    last_loss: Option<Instant>,
    created: Instant,
    /// The last REMB value.
    remb: Option<u64>,
    /// What was sent over the last judged window, bits per second.
    sent_bps: Option<f64>,
}

impl Estimator {
    pub fn new(initial_bps: u64, min_bps: u64, max_bps: u64, now: Instant) -> Self {
        Self {
            bps: initial_bps as f64,
            min_bps: min_bps as f64,
            max_bps: max_bps.max(min_bps) as f64,
            window_start: None,
            received: 0,
            total: 0,
            last_loss: None,
            created: now,
            remb: None,
            sent_bps: None,
        }
    }

    /// One transport-wide feedback: of `total` packets it covers, `received` arrived.
    /// `sent_bytes` is the running total of media bytes sent to this subscriber.
    pub fn on_feedback(&mut self, now: Instant, received: u32, total: u32, sent_bytes: u64) {
        let Some((start, sent_at_start)) = self.window_start else {
            self.window_start = Some((now, sent_bytes));
            return;
        };
        self.received += received.min(total);
        self.total += total;
        let span = now.saturating_duration_since(start);
        if span < WINDOW || self.total < MIN_PACKETS {
            return;
        }
        let loss = 1.0 - f64::from(self.received) / f64::from(self.total);
        let secs = span.as_secs_f64();
        let sent_bps = sent_bytes.saturating_sub(sent_at_start) as f64 * 8.0 / secs;
        self.sent_bps = Some(sent_bps);
        if loss > 0.10 {
            // What got through is what the link carries; without a send rate, GCC's cut.
            let next = if sent_bps > 0.0 {
                self.bps.min(sent_bps * (1.0 - loss))
            } else {
                self.bps * (1.0 - 0.5 * loss)
            };
            self.bps = next.max(self.min_bps);
            self.last_loss = Some(now);
        } else if loss < 0.02 {
            let clean = now.saturating_duration_since(self.last_loss.unwrap_or(self.created));
            self.bps = (self.bps * (1.0 + growth_per_sec(clean)).powf(secs)).min(self.max_bps);
        }
        self.window_start = Some((now, sent_bytes));
        self.received = 0;
        self.total = 0;
    }

    /// A REMB from the subscriber: when it fell and is below what we send, the receiver is
    /// congested, and the estimate drops to it (the clean-link growth starts over).
    pub fn on_remb(&mut self, now: Instant, bps: u64) {
        let fell = self
            .remb
            .is_some_and(|before| (bps as f64) < before as f64 * REMB_FALL);
        let below_sent = self.sent_bps.is_some_and(|sent| (bps as f64) < sent);
        if fell && below_sent {
            self.bps = self.bps.min(bps as f64).max(self.min_bps);
            self.last_loss = Some(now);
        }
        self.remb = Some(bps);
    }

    /// The estimate at `now`.
    pub fn estimate(&self, _now: Instant) -> u64 {
        self.bps as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated link of `cap_bps` that the sender overdrives at `send_bps`, with random
    /// loss `extra` on top; feedback every 100 ms as webrtc-rs's TWCC receiver sends it.
    struct Link {
        now: Instant,
        sent: u64,
        /// Packets (exactly, fractional) received so far, so long-run loss is exact.
        arrived: f64,
    }

    impl Link {
        fn run(&mut self, e: &mut Estimator, secs: f64, send_bps: f64, cap_bps: f64, extra: f64) {
            let steps = (secs * 10.0) as u32;
            for _ in 0..steps {
                self.now += Duration::from_millis(100);
                let bytes = send_bps / 80.0;
                self.sent += bytes as u64;
                let total = (bytes / 1200.0).ceil() as u32;
                let through = (cap_bps / send_bps).min(1.0) * (1.0 - extra);
                let before = self.arrived.floor();
                self.arrived += f64::from(total) * through;
                let received = (self.arrived.floor() - before) as u32;
                e.on_feedback(self.now, received, total, self.sent);
            }
        }
    }

    fn start(initial: u64) -> (Estimator, Link) {
        let now = Instant::now();
        (
            Estimator::new(initial, 50_000, 10_000_000, now),
            Link {
                now,
                sent: 0,
                arrived: 0.0,
            },
        )
    }

    #[test]
    fn overdriven_link_is_found_within_a_second() {
        let (mut e, mut link) = start(2_500_000);
        link.run(&mut e, 1.0, 1_600_000.0, 400_000.0, 0.0);
        let got = e.estimate(link.now);
        assert!((300_000..=450_000).contains(&got), "{got}");
    }

    #[test]
    fn clean_link_grows_8_percent_a_second_then_faster() {
        let (mut e, mut link) = start(400_000);
        link.run(&mut e, 3.0, 150_000.0, 10e6, 0.0);
        let after3 = e.estimate(link.now) as f64;
        let expected = 400_000.0 * 1.08f64.powf(2.5);
        assert!(
            (after3 / expected - 1.0).abs() < 0.05,
            "{after3} vs {expected}"
        );
        // From 400k to above f × 1.2 (1.8 Mbit/s) well within 15 s of clean link.
        link.run(&mut e, 9.0, 150_000.0, 10e6, 0.0);
        assert!(e.estimate(link.now) > 1_800_000, "{}", e.estimate(link.now));
    }

    #[test]
    fn moderate_loss_holds_and_heavy_loss_cuts() {
        let (mut e, mut link) = start(1_000_000);
        link.run(&mut e, 5.0, 800_000.0, 10e6, 0.05);
        assert_eq!(e.estimate(link.now), 1_000_000, "5 % loss holds");
        link.run(&mut e, 1.0, 800_000.0, 10e6, 0.20);
        assert!(e.estimate(link.now) < 700_000, "{}", e.estimate(link.now));
    }

    #[test]
    fn a_low_but_rising_remb_leaves_the_estimate_alone() {
        // A browser's REMB starts low and grows with what it receives: no cap from it.
        let (mut e, mut link) = start(2_000_000);
        link.run(&mut e, 1.0, 1_500_000.0, 10e6, 0.0);
        for remb in [150_000, 200_000, 260_000, 300_000] {
            e.on_remb(link.now, remb);
        }
        assert!(
            e.estimate(link.now) >= 2_000_000,
            "{}",
            e.estimate(link.now)
        );
    }

    #[test]
    fn a_falling_remb_below_the_send_rate_cuts_the_estimate() {
        let (mut e, mut link) = start(2_000_000);
        link.run(&mut e, 1.0, 1_500_000.0, 10e6, 0.0);
        e.on_remb(link.now, 1_600_000);
        assert!(
            e.estimate(link.now) >= 2_000_000,
            "above what we send: no congestion"
        );
        e.on_remb(link.now, 400_000);
        assert_eq!(e.estimate(link.now), 400_000);
        // Growth starts over from there: 8 %/s on a clean link.
        link.run(&mut e, 2.0, 300_000.0, 10e6, 0.0);
        let got = e.estimate(link.now);
        assert!((400_000..500_000).contains(&got), "{got}");
    }

    #[test]
    fn estimate_stays_within_bounds() {
        let (mut e, mut link) = start(100_000);
        link.run(&mut e, 5.0, 1_000_000.0, 10_000.0, 0.0);
        assert_eq!(e.estimate(link.now), 50_000);
        link.run(&mut e, 60.0, 100_000.0, 10e6, 0.0);
        assert_eq!(e.estimate(link.now), 10_000_000);
    }
}
