//! Payload inspection the headless client needs: VP8 keyframe detection (RFC 7741) and a
//! payload fingerprint for byte-identical checks.

use std::hash::{Hash, Hasher};

/// Whether a VP8 RTP payload starts a keyframe: the payload descriptor's S bit with partition
/// 0, then the frame tag's P bit clear (RFC 7741 §4.2-4.3).
pub fn vp8_is_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let start = first & 0x10 != 0;
    let partition = first & 0x07;
    if !start || partition != 0 {
        return false;
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        // X: extension byte with I (picture id), L (tl0picidx), T/K (tid/keyidx).
        let Some(&x) = payload.get(i) else {
            return false;
        };
        i += 1;
        if x & 0x80 != 0 {
            let Some(&pid) = payload.get(i) else {
                return false;
            };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    payload.get(i).is_some_and(|tag| tag & 0x01 == 0)
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
    let mut p = Vec::with_capacity(len.max(16));
    p.push(0x10); // S=1, PID=0, no extensions
                  // Frame tag: P bit (0 = key), version 0, show_frame 1, partition size (arbitrary).
    p.extend_from_slice(&[if keyframe { 0x10 } else { 0x11 }, 0x02, 0x00]);
    if keyframe {
        p.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
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
        assert!(vp8_is_keyframe(&synthetic_vp8(true, 1, 100)));
        assert!(!vp8_is_keyframe(&synthetic_vp8(false, 2, 100)));
        assert_eq!(synthetic_vp8(false, 2, 1200).len(), 1200);
        assert_ne!(synthetic_vp8(false, 2, 64), synthetic_vp8(false, 3, 64));
    }

    #[test]
    fn keyframe_with_extended_descriptor_is_detected() {
        // X=1, S=1; I=1 with a 15-bit picture id; then a key frame tag.
        let p = [0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00];
        assert!(vp8_is_keyframe(&p));
        let continuation = [0x00, 0x10];
        assert!(!vp8_is_keyframe(&continuation));
        assert!(!vp8_is_keyframe(&[]));
    }
}
