//! Loss recovery, pure: what a sender keeps to answer NACKs ([`History`]) and what a receiver
//! asks for again and when it gives up ([`Gaps`]). Time is passed in; the interceptors that
//! use them are in `nack.rs`, the values and why in `docs/sfu.md` ("Loss recovery").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `a` is newer than `b` in 16-bit sequence space.
fn newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// The packets written on one outgoing stream over the last `max_age`, by sequence number, at
/// most `capacity` of them.
///
/// Unlike webrtc-rs's responder, a packet older than the newest one (a retransmission the
/// server itself recovered from the publisher and forwards late) is stored in its own slot and
/// leaves the rest alone: the crate's responder took the late packet as the newest, and the
/// next packet then wiped the history between the two, so the subscriber's NACKs for any of
/// those packets went unanswered (most of the 0.6 % residual loss measured at 5 % per hop).
///
/// The ring starts small and doubles (up to `capacity`) only when a slot about to be reused
/// still holds a packet younger than `max_age`, so it holds what the stream's own rate needs:
/// a 500 kbit/s down track ~2 s of packets in 128 slots rather than 10 s in 512, and payloads
/// it keeps alive for as long. A packet older than `max_age` is not sent again: the receiver
/// has given up on it (mediasoup keeps 2 s of video for the same reason).
#[derive(Debug)]
pub struct History<P> {
    /// `(seq, written at, packet)` per slot `seq % slots.len()`; the seq tells a stale slot
    /// from a hit.
    slots: Vec<Option<(u16, Instant, P)>>,
    capacity: usize,
    max_age: Duration,
    newest: Option<u16>,
}

/// Slots a history starts with.
const FIRST_SLOTS: usize = 64;

impl<P: Clone> History<P> {
    /// `capacity`: at most 32,768 (half the sequence space, so "within the window" is clear).
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let capacity = capacity.clamp(1, 1 << 15);
        Self {
            slots: (0..FIRST_SLOTS.min(capacity)).map(|_| None).collect(),
            capacity,
            max_age,
            newest: None,
        }
    }

    pub fn add(&mut self, seq: u16, packet: P, now: Instant) {
        let newest = *self.newest.get_or_insert(seq);
        if newer(seq, newest) {
            self.newest = Some(seq);
        } else if newest.wrapping_sub(seq) as usize >= self.slots.len() {
            // Older than the window: it would evict a newer packet.
            return;
        }
        while self.slots.len() < self.capacity {
            match &self.slots[seq as usize % self.slots.len()] {
                Some((s, at, _)) if *s != seq && now.duration_since(*at) < self.max_age => {
                    self.grow()
                }
                _ => break,
            }
        }
        let n = self.slots.len();
        self.slots[seq as usize % n] = Some((seq, now, packet));
    }

    /// Twice the slots, each kept packet moved to its new one.
    fn grow(&mut self) {
        let n = (self.slots.len() * 2).min(self.capacity);
        let mut slots: Vec<Option<(u16, Instant, P)>> = (0..n).map(|_| None).collect();
        for (seq, at, p) in self.slots.drain(..).flatten() {
            let slot = &mut slots[seq as usize % n];
            // Two packets for one slot: the newer number wins, as it would have on add.
            if slot.as_ref().is_none_or(|(s, ..)| newer(seq, *s)) {
                *slot = Some((seq, at, p));
            }
        }
        self.slots = slots;
    }

    /// The packet `seq`, if it is among the last sequence numbers the ring holds, was written,
    /// and is not older than `max_age`.
    pub fn get(&self, seq: u16, now: Instant) -> Option<P> {
        let newest = self.newest?;
        if newer(seq, newest) || newest.wrapping_sub(seq) as usize >= self.slots.len() {
            return None;
        }
        match &self.slots[seq as usize % self.slots.len()] {
            Some((s, at, p)) if *s == seq && now.duration_since(*at) <= self.max_age => {
                Some(p.clone())
            }
            _ => None,
        }
    }

    /// Slots the ring has now (it grows with the stream's rate).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }
}

/// When a receiver asks for a missing packet, how often, and when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackPolicy {
    /// How long a hole waits before the first NACK: packets overtaken by a few milliseconds
    /// on the way are not lost.
    pub first_after: Duration,
    /// Between two NACKs for the same packet: longer than most round trips, so a request
    /// already answered is rarely sent again.
    pub retry_after: Duration,
    /// NACKs per packet before giving up on it.
    pub max_tries: u8,
    /// Holes tracked at most per stream; a longer outage is given up at once (a keyframe is
    /// the faster way back).
    pub max_missing: usize,
}

#[derive(Debug, Clone, Copy)]
struct Miss {
    since: Instant,
    last: Option<Instant>,
    tries: u8,
}

/// What [`Gaps::poll`] decided: sequence numbers to NACK now, and whether some packet was
/// given up (the stream needs a keyframe).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    pub nack: Vec<u16>,
    pub gave_up: bool,
}

/// The holes in one received stream.
#[derive(Debug)]
pub struct Gaps {
    policy: NackPolicy,
    /// Extended (32-bit and more) newest sequence number seen.
    newest: Option<u64>,
    missing: BTreeMap<u64, Miss>,
    /// Holes dropped without being asked for often enough (too many at once).
    overflowed: bool,
}

impl Gaps {
    pub fn new(policy: NackPolicy) -> Self {
        Self {
            policy,
            newest: None,
            missing: BTreeMap::new(),
            overflowed: false,
        }
    }

    /// Records a received packet.
    pub fn on_packet(&mut self, seq: u16, now: Instant) {
        let Some(newest) = self.newest else {
            self.newest = Some(seq as u64 + (1 << 16));
            return;
        };
        let ext = (newest as i64 + (seq.wrapping_sub(newest as u16) as i16) as i64) as u64;
        if ext <= newest {
            self.missing.remove(&ext);
            return;
        }
        let gap = ext - newest - 1;
        if gap as usize > self.policy.max_missing {
            // A jump (an outage, or a new source): too much to ask for packet by packet.
            self.missing.clear();
            self.overflowed = true;
        } else {
            for s in newest + 1..ext {
                self.missing.insert(
                    s,
                    Miss {
                        since: now,
                        last: None,
                        tries: 0,
                    },
                );
            }
            while self.missing.len() > self.policy.max_missing {
                self.missing.pop_first();
                self.overflowed = true;
            }
        }
        self.newest = Some(ext);
    }

    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && !self.overflowed
    }

    /// The NACKs due at `now`; holes asked for `max_tries` times without an answer are given up.
    pub fn poll(&mut self, now: Instant) -> Due {
        let p = self.policy;
        let mut due = Due {
            gave_up: std::mem::take(&mut self.overflowed),
            ..Due::default()
        };
        self.missing.retain(|ext, m| {
            let wait = match m.last {
                None => m.since + p.first_after,
                Some(last) => last + p.retry_after,
            };
            if now < wait {
                return true;
            }
            if m.tries >= p.max_tries {
                due.gave_up = true;
                return false;
            }
            m.tries += 1;
            m.last = Some(now);
            due.nack.push(*ext as u16);
            true
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(2);

    #[test]
    fn history_keeps_a_late_packet_without_forgetting_newer_ones() {
        let t = Instant::now();
        let mut h = History::new(8, AGE);
        for s in [100u16, 101, 103, 104] {
            h.add(s, s, t);
        }
        h.add(102, 102, t); // late
        h.add(105, 105, t);
        for s in 100u16..=105 {
            assert_eq!(h.get(s, t), Some(s), "{s}");
        }
        assert_eq!(h.get(106, t), None);
    }

    #[test]
    fn history_forgets_what_left_the_window_and_wraps() {
        let t = Instant::now();
        let mut h = History::new(4, AGE);
        for s in 65533u16..=65535 {
            h.add(s, s, t);
        }
        h.add(0, 0, t);
        h.add(1, 1, t);
        assert_eq!(h.get(65533, t), None);
        assert_eq!(h.get(65534, t), Some(65534));
        assert_eq!(h.get(1, t), Some(1));
        // Too old to store: it would evict 1.
        h.add(65533, 65533, t);
        assert_eq!(h.get(1, t), Some(1));
        assert_eq!(h.get(65533, t), None);
    }

    #[test]
    fn history_grows_with_the_rate_and_not_past_it() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // 50 packets per second for 10 s: two seconds are 100 packets, 128 slots.
        let mut slow = History::new(512, AGE);
        for i in 0..500u64 {
            slow.add(i as u16, i, ms(i * 20));
        }
        assert_eq!(slow.slots(), 128);
        assert_eq!(
            slow.get(499 - 99, ms(499 * 20)),
            Some(400),
            "2 s back is kept"
        );
        // 500 per second: capped at the capacity, the last 512 packets kept.
        let mut fast = History::new(512, AGE);
        for i in 0..2000u64 {
            fast.add(i as u16, i, ms(i * 2));
        }
        assert_eq!(fast.slots(), 512);
        assert_eq!(fast.get(1999 - 511, ms(1999 * 2)), Some(1488));
        assert_eq!(fast.get(1999 - 512, ms(1999 * 2)), None);
    }

    #[test]
    fn history_keeps_its_packets_when_it_grows_and_refuses_stale_ones() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut h = History::new(512, AGE);
        // A burst (a keyframe) of 300 packets within 30 ms: every one is kept.
        for i in 0..300u64 {
            h.add(i as u16, i, ms(i / 10));
        }
        for i in 0..300u64 {
            assert_eq!(h.get(i as u16, ms(40)), Some(i), "{i}");
        }
        // Asked for after more than max_age: the receiver gave up on it long ago.
        assert_eq!(h.get(299, ms(29 + 2001)), None);
    }

    fn policy() -> NackPolicy {
        NackPolicy {
            first_after: Duration::from_millis(10),
            retry_after: Duration::from_millis(50),
            max_tries: 3,
            max_missing: 100,
        }
    }

    #[test]
    fn a_hole_is_asked_for_after_the_reorder_delay_then_retried() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut g = Gaps::new(policy());
        g.on_packet(65534, t0);
        g.on_packet(1, t0); // 65535 and 0 missing, across the wrap
        assert_eq!(g.poll(ms(5)), Due::default());
        assert_eq!(g.poll(ms(10)).nack, vec![65535, 0]);
        assert_eq!(g.poll(ms(30)), Due::default());
        g.on_packet(0, ms(40));
        assert_eq!(g.poll(ms(60)).nack, vec![65535]);
        g.on_packet(65535, ms(61));
        assert!(g.is_empty());
    }

    #[test]
    fn a_hole_never_filled_is_given_up_after_max_tries() {
        let t0 = Instant::now();
        let mut g = Gaps::new(policy());
        g.on_packet(10, t0);
        g.on_packet(12, t0);
        let mut nacks = 0;
        let mut gave_up = false;
        for i in 0..20 {
            let due = g.poll(t0 + Duration::from_millis(10 + 50 * i));
            nacks += due.nack.len();
            gave_up |= due.gave_up;
        }
        assert_eq!(nacks, 3);
        assert!(gave_up);
        assert!(g.is_empty());
    }

    #[test]
    fn an_outage_larger_than_the_window_asks_for_a_keyframe_not_nacks() {
        let t0 = Instant::now();
        let mut g = Gaps::new(policy());
        g.on_packet(10, t0);
        g.on_packet(500, t0);
        let due = g.poll(t0 + Duration::from_secs(1));
        assert!(due.nack.is_empty());
        assert!(due.gave_up);
        assert!(g.is_empty());
    }
}
