//! A sent RTP packet as the NACK history keeps it: the header marshalled into a few inline
//! bytes, the payload shared.
//!
//! Every subscription keeps its own history (its sequence numbers are its own), so a
//! participant in a room of N holds N − 1 of them. A whole `rtp::Packet` per slot costs its
//! ~110 inline bytes plus, on the heap, the extension list (abs-send-time, set on every
//! packet) and each extension's bytes: two or three allocations per packet per subscriber,
//! kept until the slot is reused. The payload itself is shared already (a `Bytes` handle to
//! the publisher's packet, unless its VP8 descriptor was rewritten). Kept inline, the header
//! is the 20 bytes it is on the wire, with no allocation; a header that does not fit (CSRCs,
//! many extensions) is kept whole.

use std::sync::Arc;

use bytes::Bytes;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::util::{Marshal, MarshalSize, Unmarshal};

/// Header bytes kept inline: 12 fixed + 4 extension header + abs-send-time (4) and room for
/// one more small extension.
const INLINE_HEADER: usize = 28;

#[derive(Clone)]
pub(super) enum Kept {
    Inline {
        header: [u8; INLINE_HEADER],
        len: u8,
        payload: Bytes,
    },
    Whole(Arc<Packet>),
}

impl Kept {
    pub fn new(pkt: &Packet) -> Self {
        let size = pkt.header.marshal_size();
        if size <= INLINE_HEADER {
            let mut header = [0u8; INLINE_HEADER];
            if let Ok(len) = pkt.header.marshal_to(&mut header[..size]) {
                return Self::Inline {
                    header,
                    len: len as u8,
                    payload: pkt.payload.clone(),
                };
            }
        }
        Self::Whole(Arc::new(pkt.clone()))
    }

    /// The packet as it was sent. `None` only if the kept header no longer parses, which
    /// cannot happen for bytes this type marshalled.
    pub fn packet(&self) -> Option<Packet> {
        match self {
            Self::Inline {
                header,
                len,
                payload,
            } => {
                let header = Header::unmarshal(&mut &header[..*len as usize]).ok()?;
                Some(Packet {
                    header,
                    payload: payload.clone(),
                })
            }
            Self::Whole(pkt) => Some((**pkt).clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(extensions: &[(u8, &'static [u8])], csrc: usize) -> Packet {
        let mut pkt = Packet {
            header: Header {
                version: 2,
                marker: true,
                payload_type: 96,
                sequence_number: 65_535,
                timestamp: 0xdead_beef,
                ssrc: 0x0102_0304,
                csrc: (0..csrc as u32).collect(),
                ..Default::default()
            },
            payload: Bytes::from_static(&[0x90, 0x80, 0x12, 0x34, 1, 2, 3]),
        };
        for (id, value) in extensions {
            pkt.header
                .set_extension(*id, Bytes::from_static(value))
                .unwrap();
        }
        pkt
    }

    fn wire(pkt: &Packet) -> Bytes {
        pkt.marshal().unwrap()
    }

    #[test]
    fn a_packet_comes_back_byte_for_byte_with_its_payload_shared() {
        // abs-send-time (3 bytes), as every forwarded packet has; then a 2-byte extension
        // that needs padding; then none at all.
        for exts in [
            &[(2u8, &b"\x01\x02\x03"[..])][..],
            &[(2, &b"\x01\x02\x03"[..]), (5, &b"ab"[..])][..],
            &[][..],
        ] {
            let pkt = packet(exts, 0);
            let kept = Kept::new(&pkt);
            assert!(matches!(kept, Kept::Inline { .. }), "{exts:?} kept inline");
            let back = kept.packet().unwrap();
            assert_eq!(wire(&back), wire(&pkt));
            assert_eq!(
                back.payload.as_ptr(),
                pkt.payload.as_ptr(),
                "payload not copied"
            );
        }
    }

    #[test]
    fn a_header_too_large_to_inline_is_kept_whole() {
        let pkt = packet(&[(2, b"\x01\x02\x03")], 4);
        let kept = Kept::new(&pkt);
        assert!(matches!(kept, Kept::Whole(_)));
        assert_eq!(wire(&kept.packet().unwrap()), wire(&pkt));
    }

    #[test]
    fn a_slot_is_smaller_than_a_whole_packet() {
        // What a history slot holds inline; the whole packet had heap allocations on top.
        assert!(std::mem::size_of::<Kept>() < std::mem::size_of::<Packet>());
    }
}
