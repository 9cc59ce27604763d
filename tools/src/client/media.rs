//! What a headless participant sends: synthetic packets with known payloads (for byte-exact
//! checks and keyframe-on-request tests) or real VP8 and Opus from the committed fixtures,
//! looped and paced by their frame times. Every packet sent is written with our own sequence
//! number through a `TrackLocalStaticRTP`, so sends can be matched to receives by sequence.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use webrtc::media::io::ivf_reader::IVFReader;
use webrtc::media::io::ogg_reader::OggReader;
use webrtc::rtp::codecs::vp8::Vp8Payloader;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp::packetizer::Payloader;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocalWriter;

use super::codec::{payload_hash, synthetic, synthetic_vp8, VideoCodec};
use super::SentHook;
use crate::sfu::Source;
use crate::sync::lock;

/// Where a published track's packets come from.
#[derive(Debug, Clone)]
pub enum MediaSource {
    /// VP8-shaped packets, one per frame: a keyframe first and then only when the receiving
    /// side asks (PLI/FIR), so keyframe tests see exactly what a request produced.
    SyntheticVideo {
        packets_per_second: u32,
        payload_len: usize,
    },
    /// Synthetic VP8-shaped video published as simulcast: one encoding per layer (rid), each
    /// at its own rate and with its own keyframe size, keyframes on request per layer.
    SimulcastVideo(Vec<SimLayer>),
    /// Opus-kind packets with arbitrary known payloads.
    SyntheticAudio {
        packets_per_second: u32,
        payload_len: usize,
    },
    /// Real VP8 frames from an IVF file, looped. A keyframe request restarts the clip (frame 0
    /// is its only keyframe).
    Vp8File(ClipFile),
    /// Real Opus packets from an Ogg file, looped.
    OpusFile(ClipFile),
}

/// One simulcast encoding of [`MediaSource::SimulcastVideo`].
#[derive(Debug, Clone, Copy)]
pub struct SimLayer {
    pub rid: &'static str,
    pub packets_per_second: u32,
    pub payload_len: usize,
    pub width: u16,
    pub height: u16,
}

impl SimLayer {
    /// The web client's three layers (`docs/protocol.md`), at about their bitrates: q ≈ 144,
    /// h ≈ 480, f ≈ 1,440 kbit/s of payload, so a 400 kbit/s link fits only q.
    pub fn web_three() -> Vec<SimLayer> {
        Self::three_with_top(1_440_000)
    }

    /// The web client's three layers with the top one at `top_bps` of payload and the others
    /// in the page's proportions (`static/js/simulcast.js`: 150 / 500 / 1,500 kbit/s, so h is a
    /// third of f and q a tenth). One packet per frame: 1,200-byte packets, 600 for q so its
    /// frame rate stays near the others'.
    pub fn three_with_top(top_bps: u64) -> Vec<SimLayer> {
        let layer = |rid, bps: u64, payload_len: usize, width, height| SimLayer {
            rid,
            packets_per_second: (bps / 8 / payload_len as u64).max(1) as u32,
            payload_len,
            width,
            height,
        };
        vec![
            layer("q", top_bps / 10, 600, 320, 180),
            layer("h", top_bps / 3, 1200, 640, 360),
            layer("f", top_bps, 1200, 1280, 720),
        ]
    }
}

/// Where a clip's bytes come from.
#[derive(Clone, Debug)]
pub enum ClipFile {
    /// A file on disk.
    Path(PathBuf),
    /// Compiled into the binary, so `sfu-lite load` works wherever the binary is installed.
    Embedded {
        name: &'static str,
        bytes: &'static [u8],
    },
}

impl ClipFile {
    fn open(&self) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        Ok(match self {
            Self::Path(p) => Box::new(std::io::BufReader::new(std::fs::File::open(p)?)),
            Self::Embedded { bytes, .. } => Box::new(*bytes),
        })
    }
}

impl std::fmt::Display for ClipFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Embedded { name, .. } => write!(f, "{name} (built in)"),
        }
    }
}

impl MediaSource {
    pub fn is_video(&self) -> bool {
        matches!(
            self,
            Self::SyntheticVideo { .. } | Self::Vp8File(_) | Self::SimulcastVideo(_)
        )
    }

    /// The committed fixtures (`tests/fixtures/`, see its README), compiled in.
    pub fn fixture_vp8() -> Self {
        Self::Vp8File(ClipFile::Embedded {
            name: "video-320x240-vp8.ivf",
            bytes: include_bytes!("../../../tests/fixtures/video-320x240-vp8.ivf"),
        })
    }

    pub fn fixture_opus() -> Self {
        Self::OpusFile(ClipFile::Embedded {
            name: "audio-48k-opus.ogg",
            bytes: include_bytes!("../../../tests/fixtures/audio-48k-opus.ogg"),
        })
    }
}

/// What one published track sent: every packet's sequence number and payload fingerprint (when
/// recording), and totals.
#[derive(Default)]
pub struct SentLog {
    pub packets: AtomicU64,
    pub keyframes: AtomicU64,
    pub keyframe_requests: AtomicU64,
    /// Transport-wide congestion control feedback packets (RTCP) received for this track.
    pub transport_feedback: AtomicU64,
    record: bool,
    source: Option<Source>,
    on_sent: Option<SentHook>,
    log: Mutex<Vec<SentPacket>>,
}

#[derive(Debug, Clone, Copy)]
pub struct SentPacket {
    pub seq: u16,
    pub hash: u64,
    pub at: Instant,
}

impl SentLog {
    pub fn new(record: bool, source: Source, on_sent: Option<SentHook>) -> Self {
        Self {
            record,
            source: Some(source),
            on_sent,
            ..Default::default()
        }
    }

    pub fn packets(&self) -> Vec<SentPacket> {
        lock(&self.log).clone()
    }

    pub(crate) fn sent(&self, pkt: &Packet, keyframe: bool) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        if let (Some(hook), Some(source)) = (&self.on_sent, self.source) {
            hook(source, pkt.header.sequence_number, Instant::now());
        }
        if keyframe {
            self.keyframes.fetch_add(1, Ordering::Relaxed);
        }
        if self.record {
            lock(&self.log).push(SentPacket {
                seq: pkt.header.sequence_number,
                hash: payload_hash(&pkt.payload),
                at: Instant::now(),
            });
        }
    }
}

/// A clip in memory: payloads with their presentation offsets.
struct Clip {
    frames: Vec<(Bytes, Duration)>,
    length: Duration,
    clock_rate: u32,
}

fn load_ivf(file: &ClipFile) -> std::io::Result<Clip> {
    let bad = |e: &dyn std::fmt::Display| std::io::Error::other(format!("{file}: {e}"));
    let (mut reader, header) = IVFReader::new(file.open()?).map_err(|e| bad(&e))?;
    let (num, den) = (
        header.timebase_numerator.max(1) as u64,
        header.timebase_denominator.max(1) as u64,
    );
    let mut frames = Vec::new();
    while let Ok((frame, h)) = reader.parse_next_frame() {
        let at = Duration::from_nanos(h.timestamp * num * 1_000_000_000 / den);
        frames.push((frame.freeze(), at));
    }
    let step = Duration::from_nanos(num * 1_000_000_000 / den);
    let length = frames.last().map(|f| f.1 + step).unwrap_or(step);
    if frames.is_empty() {
        return Err(bad(&"no frames"));
    }
    Ok(Clip {
        frames,
        length,
        clock_rate: 90000,
    })
}

fn load_ogg(file: &ClipFile) -> std::io::Result<Clip> {
    let bad = |e: &dyn std::fmt::Display| std::io::Error::other(format!("{file}: {e}"));
    let (mut reader, _header) = OggReader::new(file.open()?, true).map_err(|e| bad(&e))?;
    let mut frames = Vec::new();
    let mut last_granule = 0u64;
    while let Ok((page, h)) = reader.parse_next_page() {
        if page.starts_with(b"OpusTags") || page.starts_with(b"OpusHead") {
            continue;
        }
        // The page's granule is the sample count at its end; it starts where the last ended.
        frames.push((
            page.freeze(),
            Duration::from_nanos(last_granule * 1_000_000_000 / 48000),
        ));
        last_granule = h.granule_position;
    }
    if frames.is_empty() {
        return Err(bad(&"no audio pages"));
    }
    Ok(Clip {
        frames,
        length: Duration::from_nanos(last_granule * 1_000_000_000 / 48000),
        clock_rate: 48000,
    })
}

/// Checks that a source can be used (files readable) before a peer joins with it.
pub fn check(source: &MediaSource) -> std::io::Result<()> {
    match source {
        MediaSource::Vp8File(p) => load_ivf(p).map(drop),
        MediaSource::OpusFile(p) => load_ogg(p).map(drop),
        _ => Ok(()),
    }
}

/// Sends `source` on `track` until `stop` turns true. `keyframe` is set by the sender's RTCP
/// reader when the far end asks for one.
pub(crate) async fn send_loop(
    track: Arc<TrackLocalStaticRTP>,
    source: MediaSource,
    keyframe: Arc<AtomicBool>,
    log: Arc<SentLog>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seq: u16 = rand::random();
    let write = |pkt: Packet, key: bool, track: Arc<TrackLocalStaticRTP>, log: Arc<SentLog>| async move {
        // Logged first: the send time is when the packet is handed to the stack.
        log.sent(&pkt, key);
        let _ = track.write_rtp(&pkt).await;
    };
    let header = |seq: u16, timestamp: u32, marker: bool| Header {
        version: 2,
        marker,
        payload_type: 96,
        sequence_number: seq,
        timestamp,
        ssrc: 0,
        ..Default::default()
    };
    match source {
        // Sent layer by layer by `simulcast`.
        MediaSource::SimulcastVideo(_) => {}
        MediaSource::SyntheticVideo {
            packets_per_second,
            payload_len,
        }
        | MediaSource::SyntheticAudio {
            packets_per_second,
            payload_len,
        } => {
            let video = matches!(source, MediaSource::SyntheticVideo { .. });
            let pps = packets_per_second.max(1);
            let clock = if video { 90000 } else { 48000 };
            let mut tick = tokio::time::interval(Duration::from_secs(1) / pps);
            let mut counter: u64 = 0;
            let mut ts: u32 = rand::random();
            // Frames in the negotiated codec, so the server finds their keyframes.
            let codec = VideoCodec::from_mime(&track.codec().mime_type).unwrap_or(VideoCodec::Vp8);
            keyframe.store(true, Ordering::Relaxed);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let key = video && keyframe.swap(false, Ordering::Relaxed);
                let payload = if video {
                    synthetic(codec, key, counter, payload_len)
                } else {
                    let mut p = counter.to_be_bytes().to_vec();
                    p.resize(payload_len.max(8), (counter % 251) as u8);
                    p
                };
                let pkt = Packet {
                    header: header(seq, ts, true),
                    payload: Bytes::from(payload),
                };
                write(pkt, key, track.clone(), log.clone()).await;
                seq = seq.wrapping_add(1);
                counter += 1;
                ts = ts.wrapping_add(clock / pps);
            }
        }
        MediaSource::Vp8File(ref path) | MediaSource::OpusFile(ref path) => {
            let video = matches!(source, MediaSource::Vp8File(_));
            let clip = match if video {
                load_ivf(path)
            } else {
                load_ogg(path)
            } {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load media fixture");
                    return;
                }
            };
            let mut payloader = Vp8Payloader::default();
            let mut ts: u32 = rand::random();
            let mut start = tokio::time::Instant::now();
            let mut index = 0usize;
            let mut last_offset = Duration::ZERO;
            loop {
                if video && keyframe.swap(false, Ordering::Relaxed) && index != 0 {
                    // Restart the clip: its first frame is a keyframe. Keep time running.
                    start = tokio::time::Instant::now() - clip.frames[0].1;
                    index = 0;
                    last_offset = Duration::ZERO;
                }
                let (frame, offset) = &clip.frames[index];
                tokio::select! {
                    _ = tokio::time::sleep_until(start + *offset) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let step = offset.saturating_sub(last_offset);
                ts = ts.wrapping_add(
                    (step.as_nanos() * clip.clock_rate as u128 / 1_000_000_000) as u32,
                );
                last_offset = *offset;
                let key = video && index == 0;
                let payloads = if video {
                    payloader.payload(1200, frame).unwrap_or_default()
                } else {
                    vec![frame.clone()]
                };
                let n = payloads.len();
                for (i, payload) in payloads.into_iter().enumerate() {
                    let pkt = Packet {
                        header: header(seq, ts, i + 1 == n),
                        payload,
                    };
                    write(pkt, key && i == 0, track.clone(), log.clone()).await;
                    seq = seq.wrapping_add(1);
                }
                index += 1;
                if index == clip.frames.len() {
                    index = 0;
                    start += clip.length;
                    last_offset = Duration::ZERO;
                    ts = ts.wrapping_add(
                        ((clip
                            .length
                            .saturating_sub(clip.frames.last().map(|f| f.1).unwrap_or_default()))
                        .as_nanos()
                            * clip.clock_rate as u128
                            / 1_000_000_000) as u32,
                    );
                }
            }
        }
    }
}

/// One packet of a simulcast layer's synthetic video (one packet per frame): keyframes carry
/// the layer's size in their header, which is where the server learns each layer's size.
pub(crate) fn simulcast_packet(
    layer: &SimLayer,
    key: bool,
    counter: u64,
    seq: u16,
    ts: u32,
) -> Packet {
    let mut payload = synthetic_vp8(key, counter, layer.payload_len);
    if key {
        payload[7..9].copy_from_slice(&layer.width.to_le_bytes());
        payload[9..11].copy_from_slice(&layer.height.to_le_bytes());
    }
    Packet {
        header: Header {
            version: 2,
            marker: true,
            payload_type: 96,
            sequence_number: seq,
            timestamp: ts,
            ..Default::default()
        },
        payload: Bytes::from(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_load_with_sensible_timing() {
        let MediaSource::Vp8File(video) = MediaSource::fixture_vp8() else {
            unreachable!()
        };
        let v = load_ivf(&video).unwrap();
        assert!(v.frames.len() >= 60, "{} frames", v.frames.len());
        assert!(super::super::codec::is_keyframe(
            VideoCodec::Vp8,
            &Vp8Payloader::default()
                .payload(1200, &v.frames[0].0)
                .unwrap()[0]
        ));
        assert!(v.length >= Duration::from_secs(2));
        let MediaSource::OpusFile(audio) = MediaSource::fixture_opus() else {
            unreachable!()
        };
        let a = load_ogg(&audio).unwrap();
        assert!(a.frames.len() >= 100, "{} pages", a.frames.len());
        assert_eq!(a.frames[1].1 - a.frames[0].1, Duration::from_millis(20));
    }
}
