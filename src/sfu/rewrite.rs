//! One continuous outgoing stream per down track: sequence numbers, timestamps and VP8 picture
//! ids / TL0PICIDX rewritten so that a switch between source streams (a simulcast layer, the
//! next track on a recycled m-line, the keyframe that ends a cut) shows the decoder no gap and
//! no jump.
//!
//! Pure: packets in, rewritten fields out, time passed in. Each source stream is named by a tag
//! the forwarder chooses (a new tag = a new source); within one source every field is the
//! input plus a fixed offset, so a hole the network made stays a hole (the client NACKs it and,
//! because the rewrite happens before `write_rtp`, the NACK responder holds that number). The
//! first source of a stream passes through unchanged (offsets 0).

use std::time::{Duration, Instant};

/// Where the VP8 payload descriptor (RFC 7741 §4.2) keeps the fields we rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Fields {
    /// Offset of the picture id and whether it is the 15-bit form (M=1).
    pub picture_id: Option<(usize, bool)>,
    /// Offset of TL0PICIDX.
    pub tl0: Option<usize>,
}

impl Vp8Fields {
    /// Parses the descriptor's extension bytes; `None` when the payload is too short.
    pub fn parse(p: &[u8]) -> Option<Self> {
        let first = *p.first()?;
        let mut fields = Self::default();
        if first & 0x80 == 0 {
            return Some(fields);
        }
        let x = *p.get(1)?;
        let mut i = 2;
        if x & 0x80 != 0 {
            let long = *p.get(i)? & 0x80 != 0;
            if long {
                p.get(i + 1)?;
            }
            fields.picture_id = Some((i, long));
            i += if long { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            p.get(i)?;
            fields.tl0 = Some(i);
        }
        Some(fields)
    }

    fn picture_id(&self, p: &[u8]) -> Option<u16> {
        let (i, long) = self.picture_id?;
        Some(if long {
            u16::from_be_bytes([p[i] & 0x7f, p[i + 1]])
        } else {
            u16::from(p[i] & 0x7f)
        })
    }

    fn set_picture_id(&self, p: &mut [u8], id: u16) {
        if let Some((i, long)) = self.picture_id {
            if long {
                p[i] = 0x80 | ((id >> 8) as u8 & 0x7f);
                p[i + 1] = id as u8;
            } else {
                p[i] = id as u8 & 0x7f;
            }
        }
    }
}

/// The offsets that map one source onto the outgoing stream.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    tag: u64,
    /// The source's newest sequence number, and how far it lies past the source's first
    /// packet (extended beyond 16 bits: a source outlives many wraps, ~7 min at 150 pkt/s).
    newest_seq: u16,
    span: u64,
    seq: u16,
    ts: u32,
    picture_id: u16,
    tl0: u8,
}

/// The newest packet written, for continuing after a switch.
#[derive(Debug, Clone, Copy)]
struct Last {
    seq: u16,
    ts: u32,
    picture_id: Option<u16>,
    tl0: Option<u8>,
    at: Instant,
}

/// A rewritten packet's fields. `payload` is set only when the VP8 descriptor changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub seq: u16,
    pub ts: u32,
    pub payload: Option<Vec<u8>>,
    /// Nothing changed: the packet can be written as it came.
    pub unchanged: bool,
}

/// One outgoing stream's rewriting state (one per m-line).
#[derive(Debug, Default)]
pub struct Rewriter {
    mapping: Option<Mapping>,
    last: Option<Last>,
}

/// `a` is newer than `b` in 16-bit sequence space.
fn newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

impl Rewriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rewrites one packet of source `tag` (a larger tag is a newer source). `vp8` says whether the payload has a VP8
    /// descriptor; `clock_rate` converts the pause at a switch into timestamp ticks. `None`:
    /// the packet belongs before the current source started (a late packet of an old
    /// source, or of this one from before the switch) and must not be written.
    pub fn rewrite(
        &mut self,
        tag: u64,
        seq: u16,
        ts: u32,
        payload: &[u8],
        vp8: bool,
        clock_rate: u32,
        now: Instant,
    ) -> Option<Rewritten> {
        let fields = if vp8 {
            Vp8Fields::parse(payload).unwrap_or_default()
        } else {
            Vp8Fields::default()
        };
        let pid_in = fields.picture_id(payload);
        let tl0_in = fields.tl0.map(|i| payload[i]);
        // Tags grow with time (see `forward::next_tag`): a smaller one is an older source,
        // whose late packets would land inside the numbers the newer one uses.
        match self.mapping {
            Some(m) if m.tag > tag => return None,
            Some(m) if m.tag == tag => {}
            _ => {
                self.mapping = Some(self.switch_to(tag, seq, ts, pid_in, tl0_in, clock_rate, now));
            }
        }
        let m = self.mapping.as_mut().expect("set above");
        // Where this packet lies from the source's first one. Within half the sequence space
        // of the newest, so a retransmission or a reordered packet finds its place; before the
        // first, it belongs to the numbers the previous source used.
        let offset = i64::from(seq.wrapping_sub(m.newest_seq) as i16);
        let position = m.span as i64 + offset;
        if position < 0 {
            return None;
        }
        if offset > 0 {
            m.newest_seq = seq;
            m.span = position as u64;
        }
        let m = *m;
        let out_seq = seq.wrapping_add(m.seq);
        let out_ts = ts.wrapping_add(m.ts);
        let out_pid = pid_in.map(|p| p.wrapping_add(m.picture_id) & 0x7fff);
        let out_tl0 = tl0_in.map(|t| t.wrapping_add(m.tl0));
        let payload_changed =
            (pid_in.is_some() && m.picture_id != 0) || (tl0_in.is_some() && m.tl0 != 0);
        let payload = payload_changed.then(|| {
            let mut p = payload.to_vec();
            if let Some(id) = out_pid {
                fields.set_picture_id(&mut p, id);
            }
            if let (Some(i), Some(t)) = (fields.tl0, out_tl0) {
                p[i] = t;
            }
            p
        });
        if self.last.is_none_or(|l| newer(out_seq, l.seq)) {
            let prev = self.last;
            self.last = Some(Last {
                seq: out_seq,
                ts: out_ts,
                picture_id: out_pid.or(prev.and_then(|l| l.picture_id)),
                tl0: out_tl0.or(prev.and_then(|l| l.tl0)),
                at: now,
            });
        }
        Some(Rewritten {
            seq: out_seq,
            ts: out_ts,
            unchanged: m.seq == 0 && m.ts == 0 && payload.is_none(),
            payload,
        })
    }

    /// Offsets that make source `tag`'s first packet follow the last one written.
    #[allow(clippy::too_many_arguments)]
    fn switch_to(
        &self,
        tag: u64,
        seq: u16,
        ts: u32,
        pid: Option<u16>,
        tl0: Option<u8>,
        clock_rate: u32,
        now: Instant,
    ) -> Mapping {
        let Some(last) = self.last else {
            return Mapping {
                tag,
                newest_seq: seq,
                span: 0,
                seq: 0,
                ts: 0,
                picture_id: 0,
                tl0: 0,
            };
        };
        // The pause since the last packet, in the stream's clock (at least one tick, so
        // the new first frame is never older than the last one written).
        let gap = now
            .saturating_duration_since(last.at)
            .min(Duration::from_secs(60));
        let ticks = ((gap.as_micros() as u64 * u64::from(clock_rate)) / 1_000_000).max(1) as u32;
        Mapping {
            tag,
            newest_seq: seq,
            span: 0,
            seq: last.seq.wrapping_add(1).wrapping_sub(seq),
            ts: last.ts.wrapping_add(ticks).wrapping_sub(ts),
            picture_id: match (last.picture_id, pid) {
                (Some(l), Some(p)) => l.wrapping_add(1).wrapping_sub(p) & 0x7fff,
                _ => 0,
            },
            tl0: match (last.tl0, tl0) {
                (Some(l), Some(t)) => l.wrapping_add(1).wrapping_sub(t),
                _ => 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload with a 15-bit picture id and a TL0PICIDX.
    fn vp8(pid: u16, tl0: u8) -> Vec<u8> {
        vec![
            0x90,
            0xc0,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
            0x10,
            0,
            0,
        ]
    }

    fn ids(p: &[u8]) -> (u16, u8) {
        let f = Vp8Fields::parse(p).unwrap();
        (f.picture_id(p).unwrap(), p[f.tl0.unwrap()])
    }

    const CLOCK: u32 = 90_000;

    #[test]
    fn first_source_passes_through_unchanged() {
        let mut rw = Rewriter::new();
        let t0 = Instant::now();
        let out = rw
            .rewrite(1, 1000, 5000, &vp8(7, 3), true, CLOCK, t0)
            .unwrap();
        assert_eq!(
            (out.seq, out.ts, out.payload, out.unchanged),
            (1000, 5000, None, true)
        );
        // A hole stays a hole: the client NACKs it and the responder has the number.
        let out = rw
            .rewrite(1, 1003, 8000, &vp8(8, 3), true, CLOCK, t0)
            .unwrap();
        assert_eq!((out.seq, out.ts), (1003, 8000));
    }

    #[test]
    fn switch_continues_sequence_timestamp_and_picture_ids() {
        let mut rw = Rewriter::new();
        let t0 = Instant::now();
        rw.rewrite(1, 65535, u32::MAX - 10, &vp8(0x7fff, 255), true, CLOCK, t0)
            .unwrap();
        // The new source starts elsewhere in every number space, 100 ms later.
        let t1 = t0 + Duration::from_millis(100);
        let out = rw
            .rewrite(2, 17, 123_456, &vp8(400, 9), true, CLOCK, t1)
            .unwrap();
        assert_eq!(out.seq, 0, "continues after 65535");
        assert_eq!(out.ts, (u32::MAX - 10).wrapping_add(9000));
        assert_eq!(
            ids(out.payload.as_ref().unwrap()),
            (0, 0),
            "picture id and tl0 wrap on"
        );
        let out = rw
            .rewrite(2, 18, 126_456, &vp8(401, 10), true, CLOCK, t1)
            .unwrap();
        assert_eq!((out.seq, out.ts), (1, (u32::MAX - 10).wrapping_add(12_000)));
        assert_eq!(ids(out.payload.as_ref().unwrap()), (1, 1));
    }

    #[test]
    fn late_packets_from_before_the_switch_are_not_written() {
        let mut rw = Rewriter::new();
        let t0 = Instant::now();
        rw.rewrite(1, 10, 0, &[0], false, CLOCK, t0).unwrap();
        rw.rewrite(2, 500, 0, &[0], false, CLOCK, t0).unwrap();
        assert_eq!(rw.rewrite(2, 499, 0, &[0], false, CLOCK, t0), None);
        assert_eq!(
            rw.rewrite(1, 11, 0, &[0], false, CLOCK, t0),
            None,
            "old source"
        );
    }

    #[test]
    fn one_source_keeps_flowing_across_sequence_wraps() {
        let mut rw = Rewriter::new();
        let t0 = Instant::now();
        let start = 60_000u16;
        // Three wraps of one source; every packet is written, a late one included.
        for i in 0..200_000u32 {
            let seq = start.wrapping_add(i as u16);
            assert!(
                rw.rewrite(1, seq, i, &[0], false, CLOCK, t0).is_some(),
                "packet {i} written"
            );
            if i % 50_000 == 10 {
                let late = seq.wrapping_sub(5);
                assert!(rw.rewrite(1, late, i, &[0], false, CLOCK, t0).is_some());
            }
        }
        // After all those wraps, the packets from before the source started still are not.
        let mut fresh = Rewriter::new();
        fresh.rewrite(1, 10, 0, &[0], false, CLOCK, t0).unwrap();
        assert_eq!(fresh.rewrite(1, 9, 0, &[0], false, CLOCK, t0), None);
    }

    #[test]
    fn resync_on_the_same_numbers_closes_the_gap_of_a_cut() {
        // A cut dropped 20..=39; the keyframe at 40 starts a new tag: no hole downstream.
        let mut rw = Rewriter::new();
        let t0 = Instant::now();
        for s in 0..20u16 {
            rw.rewrite(1, s, u32::from(s) * 3000, &[0], false, CLOCK, t0)
                .unwrap();
        }
        let out = rw.rewrite(2, 40, 120_000, &[0], false, CLOCK, t0).unwrap();
        assert_eq!(out.seq, 20);
        assert!(out.ts > 19 * 3000);
    }

    #[test]
    fn short_picture_ids_and_missing_fields_are_handled() {
        let mut rw = Rewriter::new();
        let t0 = Instant::now();
        rw.rewrite(1, 1, 0, &vp8(1000, 1), true, CLOCK, t0).unwrap();
        // 7-bit picture id, no TL0PICIDX.
        let short = [0x90, 0x80, 0x05, 0x10, 0, 0];
        let out = rw.rewrite(2, 9, 0, &short, true, CLOCK, t0).unwrap();
        let p = out.payload.unwrap();
        assert_eq!(p[2], (1001 & 0x7f) as u8);
        // Truncated descriptors never panic.
        for bad in [&[0x90][..], &[0x90, 0x80], &[0x90, 0xc0, 0x80, 1]] {
            assert!(rw.rewrite(3, 100, 0, bad, true, CLOCK, t0).is_some());
        }
        assert_eq!(Vp8Fields::parse(&[]), None);
    }
}
