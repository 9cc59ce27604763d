//! The local track behind one subscription. webrtc-rs's `TrackLocalStaticRTP` serves any number
//! of bindings, so every write takes an async lock, clones its binding list and rewrites header
//! extensions. A subscription has exactly one binding (its subscriber connection) and one
//! writer task, so this track keeps the binding in an `ArcSwapOption` and a write is: load it,
//! set SSRC and payload type, hand the packet to the connection.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use webrtc::error::{Error, Result};
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::track::track_local::{TrackLocal, TrackLocalContext, TrackLocalWriter};

struct Binding {
    id: String,
    ssrc: u32,
    payload_type: u8,
    write_stream: Arc<dyn TrackLocalWriter + Send + Sync>,
    /// The sender's pause flag (webrtc-rs keeps it in its own atomic type).
    paused: Box<dyn Fn() -> bool + Send + Sync>,
}

pub(crate) struct DownTrackLocal {
    id: String,
    stream_id: String,
    codec: RTCRtpCodecCapability,
    binding: ArcSwapOption<Binding>,
}

impl DownTrackLocal {
    pub fn new(codec: RTCRtpCodecCapability, id: String, stream_id: String) -> Self {
        Self {
            id,
            stream_id,
            codec,
            binding: ArcSwapOption::empty(),
        }
    }

    /// Writes one packet with this binding's SSRC and payload type. `Ok(0)`: not bound (yet)
    /// or paused, nothing sent.
    pub async fn write(&self, pkt: &Packet) -> Result<usize> {
        let Some(b) = self.binding.load_full() else {
            return Ok(0);
        };
        if (b.paused)() {
            return Ok(0);
        }
        let mut out = pkt.clone();
        out.header.ssrc = b.ssrc;
        out.header.payload_type = b.payload_type;
        b.write_stream.write_rtp(&out).await
    }

    /// The negotiated codec matching ours: same MIME type, the same fmtp line preferred.
    fn pick<'a>(&self, offered: &'a [RTCRtpCodecParameters]) -> Option<&'a RTCRtpCodecParameters> {
        let same_mime = |c: &&RTCRtpCodecParameters| {
            c.capability
                .mime_type
                .eq_ignore_ascii_case(&self.codec.mime_type)
        };
        offered
            .iter()
            .filter(same_mime)
            .find(|c| c.capability.sdp_fmtp_line == self.codec.sdp_fmtp_line)
            .or_else(|| offered.iter().find(same_mime))
    }
}

#[async_trait]
impl TrackLocal for DownTrackLocal {
    async fn bind(&self, t: &TrackLocalContext) -> Result<RTCRtpCodecParameters> {
        let codec = self
            .pick(t.codec_parameters())
            .cloned()
            .ok_or(Error::ErrUnsupportedCodec)?;
        self.binding.store(Some(Arc::new(Binding {
            id: t.id(),
            ssrc: t.ssrc(),
            payload_type: codec.payload_type,
            write_stream: t.write_stream(),
            paused: {
                let flag = t.paused();
                Box::new(move || flag.load(Ordering::Relaxed))
            },
        })));
        Ok(codec)
    }

    async fn unbind(&self, t: &TrackLocalContext) -> Result<()> {
        let current = self.binding.load();
        match current.as_ref() {
            Some(b) if b.id == t.id() => {
                drop(current);
                self.binding.store(None);
                Ok(())
            }
            _ => Err(Error::ErrUnbindFailed),
        }
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn rid(&self) -> Option<&str> {
        None
    }

    fn stream_id(&self) -> &str {
        &self.stream_id
    }

    fn kind(&self) -> RTPCodecType {
        if self
            .codec
            .mime_type
            .to_ascii_lowercase()
            .starts_with("audio/")
        {
            RTPCodecType::Audio
        } else {
            RTPCodecType::Video
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
