//! Payloads for the headless client: synthetic video packets in the negotiated codec, whose
//! keyframes the server's detection (`sfu::codec`, the one place that parses payloads) finds,
//! and a payload fingerprint for byte-identical checks.

use std::hash::{Hash, Hasher};

pub use crate::sfu::codec::VideoCodec;

/// Whether a payload of `codec` starts a keyframe.
pub fn is_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    codec.is_keyframe_start(payload)
}

/// A 64-bit fingerprint of a payload (SipHash with fixed keys: stable within a run).
pub fn payload_hash(payload: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut h);
    h.finish()
}

/// A synthetic VP8 payload: a valid descriptor and frame tag (keyframes carry the start code
/// and a 320x240 size) followed by `len` bytes derived from `counter`, so every packet differs.
pub fn synthetic_vp8(keyframe: bool, counter: u64, len: usize) -> Vec<u8> {
    synthetic(VideoCodec::Vp8, keyframe, counter, len)
}

/// A synthetic one-packet frame of `codec`: the codec's payload header (VP8: descriptor and
/// frame tag, keyframes with the start code and a 320x240 size; VP9: a descriptor with B and E
/// set and P clear on keyframes; H.264: one NAL unit, IDR for keyframes) followed by bytes
/// derived from `counter`, up to `len`, so every packet differs.
pub fn synthetic(codec: VideoCodec, keyframe: bool, counter: u64, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len.max(16));
    match codec {
        VideoCodec::Vp8 => {
            p.push(0x10); // S=1, PID=0, no extensions
                          // Frame tag: P bit (0 = key), version 0, show_frame 1, partition size.
            p.extend_from_slice(&[if keyframe { 0x10 } else { 0x11 }, 0x02, 0x00]);
            if keyframe {
                p.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
            }
        }
        // I=0 P L=0 F=0 B=1 E=1 V=0 Z=0.
        VideoCodec::Vp9 => p.push(if keyframe { 0x0c } else { 0x4c }),
        // NAL header: F=0, NRI=3, type 5 (IDR slice) or 1 (non-IDR slice).
        VideoCodec::H264 => p.push(if keyframe { 0x65 } else { 0x61 }),
    }
    p.extend_from_slice(&counter.to_be_bytes());
    let mut x = counter.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while p.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(x as u8);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_keyframes_are_detected_and_deltas_are_not() {
        for codec in [VideoCodec::Vp8, VideoCodec::Vp9, VideoCodec::H264] {
            assert!(
                is_keyframe(codec, &synthetic(codec, true, 1, 100)),
                "{codec:?}"
            );
            assert!(
                !is_keyframe(codec, &synthetic(codec, false, 2, 100)),
                "{codec:?}"
            );
            assert_eq!(synthetic(codec, false, 2, 1200).len(), 1200);
            assert_ne!(
                synthetic(codec, false, 2, 64),
                synthetic(codec, false, 3, 64)
            );
        }
    }
}
