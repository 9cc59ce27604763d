//! Where a decoder can start again: keyframe detection on RTP payloads, per video codec.
//!
//! Pure functions over the payload's first bytes, no allocation: the forwarder calls them per
//! packet when a subscriber is waiting for a keyframe after a drop.
//! - VP8 (RFC 7741): payload descriptor with S=1 and partition 0, then the frame tag's P bit
//!   clear.
//! - VP9 (RFC 9628): descriptor with B=1 (start of a frame) and P=0 (not inter-predicted), on
//!   spatial layer 0 when the layer byte is present.
//! - H.264 (RFC 6184): an IDR slice (type 5) or SPS (type 7) as a single NAL unit, inside a
//!   STAP-A, or at the start of an FU-A.

/// The video codecs the forwarder can cut at a frame boundary; everything else (audio) is
/// forwarded packet by packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
}

impl VideoCodec {
    /// The codec of a MIME type such as `video/VP8` (case-insensitive); `None` for audio and
    /// codecs we do not parse.
    pub fn from_mime(mime: &str) -> Option<Self> {
        let name = mime.rsplit('/').next()?;
        [("vp8", Self::Vp8), ("vp9", Self::Vp9), ("h264", Self::H264)]
            .into_iter()
            .find(|(n, _)| name.eq_ignore_ascii_case(n))
            .map(|(_, c)| c)
    }

    /// Whether `payload` is the first packet of a keyframe (a decoder can start here).
    pub fn is_keyframe_start(self, payload: &[u8]) -> bool {
        match self {
            Self::Vp8 => vp8_keyframe_start(payload),
            Self::Vp9 => vp9_keyframe_start(payload),
            Self::H264 => h264_keyframe_start(payload),
        }
    }
}

fn vp8_keyframe_start(p: &[u8]) -> bool {
    vp8_frame_tag_at(p).is_some_and(|i| p.get(i).is_some_and(|tag| tag & 0x01 == 0))
}

/// The frame size a VP8 keyframe's first packet announces (RFC 6386 §9.1: 3-byte frame tag,
/// start code, then 14-bit width and height). What a simulcast layer really carries.
pub fn vp8_keyframe_size(p: &[u8]) -> Option<(u32, u32)> {
    if !vp8_keyframe_start(p) {
        return None;
    }
    let i = vp8_frame_tag_at(p)?;
    let h = p.get(i..i + 10)?;
    if h[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([h[6], h[7]]) & 0x3fff);
    let ht = u32::from(u16::from_le_bytes([h[8], h[9]]) & 0x3fff);
    Some((w, ht))
}

/// Where the VP8 frame tag starts in a payload that starts partition 0.
fn vp8_frame_tag_at(p: &[u8]) -> Option<usize> {
    let first = *p.first()?;
    let start_of_partition_0 = first & 0x10 != 0 && first & 0x07 == 0;
    if !start_of_partition_0 {
        return None;
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        // X: I (picture id, 1 or 2 bytes), L (TL0PICIDX), T/K (one shared byte).
        let x = *p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            let pid = *p.get(i)?;
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    Some(i)
}

fn vp9_keyframe_start(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let (i_bit, p_bit, l_bit, b_bit) = (
        first & 0x80 != 0,
        first & 0x40 != 0,
        first & 0x20 != 0,
        first & 0x08 != 0,
    );
    if p_bit || !b_bit {
        return false;
    }
    if !l_bit {
        return true;
    }
    let mut i = 1;
    if i_bit {
        let Some(&pid) = p.get(i) else { return false };
        i += if pid & 0x80 != 0 { 2 } else { 1 };
    }
    // Layer byte: TID(3) U(1) SID(3) D(1). Only the base spatial layer starts a picture.
    p.get(i).is_some_and(|layers| (layers >> 1) & 0x07 == 0)
}

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

fn h264_keyframe_start(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let starts_keyframe = |nal_type: u8| nal_type == NAL_IDR || nal_type == NAL_SPS;
    match first & 0x1f {
        NAL_STAP_A => {
            // Aggregated NAL units, each behind a 16-bit size.
            let mut i = 1;
            while let (Some(&hi), Some(&lo)) = (p.get(i), p.get(i + 1)) {
                let size = usize::from(hi) << 8 | usize::from(lo);
                match p.get(i + 2) {
                    Some(&nal) if size > 0 => {
                        if starts_keyframe(nal & 0x1f) {
                            return true;
                        }
                    }
                    _ => return false,
                }
                i += 2 + size;
            }
            false
        }
        // FU-A: the FU header's S bit marks the fragment that starts the NAL unit.
        NAL_FU_A => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && starts_keyframe(fu & 0x1f)),
        nal_type => starts_keyframe(nal_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use VideoCodec::*;

    #[test]
    fn mime_types_name_the_video_codecs_only() {
        assert_eq!(VideoCodec::from_mime("video/VP8"), Some(Vp8));
        assert_eq!(VideoCodec::from_mime("video/vp9"), Some(Vp9));
        assert_eq!(VideoCodec::from_mime("video/H264"), Some(H264));
        assert_eq!(VideoCodec::from_mime("audio/opus"), None);
        assert_eq!(VideoCodec::from_mime(""), None);
    }

    #[test]
    fn vp8_keyframe_is_start_of_partition_0_with_p_clear() {
        assert!(Vp8.is_keyframe_start(&[0x10, 0x10, 0x02, 0x00]));
        // Interframe (P=1), continuation (S=0), other partition.
        assert!(!Vp8.is_keyframe_start(&[0x10, 0x11, 0x02, 0x00]));
        assert!(!Vp8.is_keyframe_start(&[0x00, 0x10]));
        assert!(!Vp8.is_keyframe_start(&[0x11, 0x10]));
        // X=1, I=1 with a 15-bit picture id, L=1, T=1: the tag is at byte 6.
        assert!(Vp8.is_keyframe_start(&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x10]));
        assert!(!Vp8.is_keyframe_start(&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x11]));
        // Truncated descriptors are not keyframes (and do not panic).
        assert!(!Vp8.is_keyframe_start(&[0x90, 0xe0, 0x81]));
        assert!(!Vp8.is_keyframe_start(&[]));
    }

    #[test]
    fn vp9_keyframe_is_frame_start_without_inter_prediction_on_layer_0() {
        // B=1, P=0, no other fields.
        assert!(Vp9.is_keyframe_start(&[0x08, 0xaa]));
        // P=1, or B=0.
        assert!(!Vp9.is_keyframe_start(&[0x48]));
        assert!(!Vp9.is_keyframe_start(&[0x00]));
        // I=1 (7-bit picture id), L=1, B=1: SID 0 starts the picture, SID 1 does not.
        assert!(Vp9.is_keyframe_start(&[0xa8, 0x05, 0x00, 0x00]));
        assert!(!Vp9.is_keyframe_start(&[0xa8, 0x05, 0x02, 0x00]));
        // I=1 with a 15-bit picture id, L=1.
        assert!(Vp9.is_keyframe_start(&[0xa8, 0x80, 0x05, 0x00, 0x00]));
        assert!(!Vp9.is_keyframe_start(&[0xa8, 0x80]));
        assert!(!Vp9.is_keyframe_start(&[]));
    }

    #[test]
    fn h264_keyframe_is_idr_or_sps_alone_aggregated_or_first_fragment() {
        assert!(H264.is_keyframe_start(&[0x65, 0x88])); // IDR
        assert!(H264.is_keyframe_start(&[0x67, 0x42])); // SPS
        assert!(!H264.is_keyframe_start(&[0x41, 0x9a])); // non-IDR slice
        assert!(!H264.is_keyframe_start(&[0x68, 0xce])); // PPS alone

        // STAP-A with SPS and PPS; PPS then IDR; only a non-IDR slice; truncated; empty unit.
        assert!(H264.is_keyframe_start(&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]));
        assert!(H264.is_keyframe_start(&[0x78, 0x00, 0x01, 0x68, 0x00, 0x01, 0x65]));
        assert!(!H264.is_keyframe_start(&[0x78, 0x00, 0x02, 0x41, 0x9a]));
        assert!(!H264.is_keyframe_start(&[0x78, 0x00, 0x09]));
        assert!(!H264.is_keyframe_start(&[0x78, 0x00, 0x00, 0x65]));
        // FU-A: start fragment of an IDR; middle fragment; start of a non-IDR slice.
        assert!(H264.is_keyframe_start(&[0x7c, 0x85, 0x00]));
        assert!(!H264.is_keyframe_start(&[0x7c, 0x05, 0x00]));
        assert!(!H264.is_keyframe_start(&[0x7c, 0x81, 0x00]));
        assert!(!H264.is_keyframe_start(&[0x7c]));
        assert!(!H264.is_keyframe_start(&[]));
    }
}
