//! Forwarding: one *up* track per published track, each with one *layer* per simulcast
//! encoding (one for a plain track), each layer read once by its reader task and fanned out to
//! one *down* track per subscriber (`down.rs`), each written by its own task from a bounded
//! queue.
//!
//! The packet path takes no lock: a reader loads the subscriber list from an `ArcSwap`
//! (writers replace the whole list, which happens only on (un)subscribe), wraps each packet in
//! one `Arc` and `try_send`s it to every queue whose subscription carries its layer. A full
//! queue drops that packet for that subscriber only, counted in `dropped_packets`. Audio loses
//! that one packet. Video would be undecodable until the next keyframe anyway, so the
//! subscriber is *cut*: it gets nothing more until a keyframe starts (`codec`), and the
//! publisher is asked for one (throttled by the layer's keyframe task).
//!
//! A sink forwards its `current` layer; when the layer selector gives it another `target`, it
//! switches on the first keyframe start of the target layer (the selector asked for one), so
//! the subscriber's decoder always starts on a keyframe. Every switch and every end of a cut
//! gives the sink a new *tag*: the down track's rewriter (`rewrite.rs`) continues its
//! sequence numbers, timestamps and picture ids across it. Only the track's readers touch a
//! sink's cut flag and `current`; relaxed atomics are enough (one reader per layer, and a layer
//! only changes `current` away from itself on a keyframe of the target).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_remote::TrackRemote;

use super::codec::{vp8_keyframe_size, VideoCodec};
use super::keyframe::KeyframeThrottle;
use super::layers::LayerOption;
use super::{ParticipantId, Source};
use crate::metrics::{inc, GaugeGuard, Metrics};
use crate::sync::lock;

/// A forwarded packet, shared by every subscriber's queue.
pub(crate) type SharedPacket = Arc<Packet>;
/// A queued packet with the tag of the source stream it belongs to (see `rewrite.rs`).
pub(crate) type Queued = (u64, SharedPacket);
/// No layer: nothing forwarded (not started yet, or the tile is hidden).
pub(crate) const NO_LAYER: u8 = u8::MAX;

/// Source tags grow with time across the whole server, so a down track's rewriter can tell an
/// older source's late packet from a newer source's first.
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_tag() -> u64 {
    NEXT_TAG.fetch_add(1, Ordering::Relaxed)
}

/// One subscriber's queue for one up track.
pub(crate) struct Sink {
    tx: mpsc::Sender<Queued>,
    video: bool,
    /// Video only: a packet was dropped and nothing is queued until a keyframe starts.
    cut: AtomicBool,
    /// The layer forwarded now, and the one the selector wants.
    current: AtomicU8,
    target: AtomicU8,
    tag: AtomicU64,
}

/// What [`Sink::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Push {
    Queued,
    /// Not this subscription's layer.
    Ignored,
    /// Dropped: the queue was full (audio), or the video is cut and this is no keyframe start.
    Dropped,
    /// The queue was full: the video is cut from here to the next keyframe, or the keyframe
    /// that would have ended a cut was lost. A keyframe is needed.
    NeedsKeyframe,
}

impl Sink {
    /// `first`: the layer to forward from the start; video (see `UpTrack::new_sink`) starts at
    /// [`NO_LAYER`] and switches to its target on the target's first keyframe.
    fn new(tx: mpsc::Sender<Queued>, video: bool, first: u8, target: u8) -> Self {
        Self {
            tx,
            video,
            cut: AtomicBool::new(false),
            current: AtomicU8::new(first),
            target: AtomicU8::new(target),
            tag: AtomicU64::new(next_tag()),
        }
    }

    pub fn current(&self) -> u8 {
        self.current.load(Ordering::Relaxed)
    }

    pub fn target(&self) -> u8 {
        self.target.load(Ordering::Relaxed)
    }

    /// The selector's choice; takes effect on the target's next keyframe ([`NO_LAYER`]: at
    /// once).
    pub fn set_target(&self, layer: u8) {
        self.target.store(layer, Ordering::Relaxed);
    }

    /// Queues `pkt` of `layer` if this subscription carries that layer, unless the queue is
    /// full or the video is cut; `keyframe_start` is asked only when it matters. Called by
    /// the layer's reader only.
    fn push(
        &self,
        layer: u8,
        pkt: &SharedPacket,
        keyframe_start: &mut impl FnMut() -> bool,
    ) -> Push {
        let current = self.current.load(Ordering::Relaxed);
        let target = self.target.load(Ordering::Relaxed);
        if layer != current {
            if layer == target && self.video && keyframe_start() {
                self.current.store(layer, Ordering::Relaxed);
                self.cut.store(false, Ordering::Relaxed);
                self.tag.store(next_tag(), Ordering::Relaxed);
                return self.send(pkt);
            }
            return Push::Ignored;
        }
        if target == NO_LAYER {
            self.current.store(NO_LAYER, Ordering::Relaxed);
            return Push::Ignored;
        }
        let was_cut = self.video && self.cut.load(Ordering::Relaxed);
        if was_cut {
            if !keyframe_start() {
                return Push::Dropped;
            }
            // The packets dropped during the cut are gone for good: a new source for the
            // rewriter, so the subscriber sees no hole to NACK.
            self.tag.store(next_tag(), Ordering::Relaxed);
        }
        let pushed = self.send(pkt);
        if was_cut && pushed == Push::Queued {
            self.cut.store(false, Ordering::Relaxed);
        }
        pushed
    }

    fn send(&self, pkt: &SharedPacket) -> Push {
        let tag = self.tag.load(Ordering::Relaxed);
        match self.tx.try_send((tag, pkt.clone())) {
            Ok(()) => Push::Queued,
            Err(mpsc::error::TrySendError::Full(_)) if self.video => {
                self.cut.store(true, Ordering::Relaxed);
                Push::NeedsKeyframe
            }
            Err(mpsc::error::TrySendError::Full(_)) => Push::Dropped,
            // The subscriber is going away; its list entry is about to be removed.
            Err(mpsc::error::TrySendError::Closed(_)) => Push::Queued,
        }
    }
}

/// Nominal cost and size of the rids the web client publishes (`docs/protocol.md`), used for a
/// layer until it has been measured (a paused layer costs nothing now but will when resumed).
fn nominal(rid: &str) -> (u64, u32, u32) {
    match rid {
        "q" => (150_000, 320, 180),
        "h" => (500_000, 640, 360),
        "f" => (1_500_000, 1280, 720),
        _ => (0, 0, 0),
    }
}

/// A layer's position by rid, low to high; a plain track's one layer is 0.
pub(crate) fn layer_index(rid: &str) -> u8 {
    match rid {
        "h" => 1,
        "f" => 2,
        _ => 0,
    }
}

/// One encoding of an up track: its own SSRC, keyframe task and bitrate meter.
pub(crate) struct Layer {
    pub rid: String,
    pub index: u8,
    /// Capacity 1: requests that arrive while one is pending coalesce into it.
    keyframe_tx: mpsc::Sender<()>,
    bytes: AtomicU64,
    width: AtomicU32,
    height: AtomicU32,
    meter: Mutex<Meter>,
}

/// A layer's bitrate meter: bytes at the last measurement, when it was taken, the last rate
/// measured while the layer flowed, and whether it flowed in the last window.
#[derive(Debug, Default)]
struct Meter {
    bytes: u64,
    at: Option<Instant>,
    last_bps: u64,
    flowing: bool,
}

impl Layer {
    /// The layer's cost and size for the selector: measured over the last half second or more
    /// while it flows. While it is paused, the larger of the last rate seen and its nominal
    /// value: what it sent last was often the encoder's ramp after a resume, far below what it
    /// sends once it is back (a Chromium `h` measured 240 kbit/s that way, then sent 500 into a
    /// 400 kbit/s link), and a downswitch must not land on a layer that overdrives the link.
    fn option(&self, now: Instant) -> LayerOption {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let (nominal_bps, w, h) = nominal(&self.rid);
        let mut m = lock(&self.meter);
        match m.at {
            Some(at) if now.duration_since(at) >= Duration::from_millis(500) => {
                let bps = (bytes - m.bytes) * 8 * 1000 / now.duration_since(at).as_millis() as u64;
                m.flowing = bps > 0;
                if m.flowing {
                    m.last_bps = bps;
                }
                m.bytes = bytes;
                m.at = Some(now);
            }
            Some(_) => {}
            None => {
                m.bytes = bytes;
                m.at = Some(now);
            }
        }
        let bps = if m.flowing {
            m.last_bps
        } else {
            m.last_bps.max(nominal_bps)
        };
        let width = self.width.load(Ordering::Relaxed);
        LayerOption {
            index: self.index,
            bps,
            width: if width > 0 { width } else { w },
            height: if width > 0 {
                self.height.load(Ordering::Relaxed)
            } else {
                h
            },
        }
    }
}

/// A published track as the room sees it.
pub(crate) struct UpTrack {
    pub publisher: ParticipantId,
    pub mid: String,
    pub source: Source,
    pub kind: &'static str,
    pub codec: RTCRtpCodecCapability,
    /// Set for the video codecs whose keyframes we can find; cuts and switches need it.
    video: Option<VideoCodec>,
    /// The publisher sends several encodings (rids).
    pub simulcast: bool,
    /// Not on the packet path (each reader holds its own layer).
    layers: Mutex<Vec<Arc<Layer>>>,
    sinks: ArcSwap<Vec<Arc<Sink>>>,
    /// Layer readers still running; the track ends with the last.
    readers: AtomicUsize,
}

impl UpTrack {
    pub fn new(
        publisher: ParticipantId,
        mid: String,
        source: Source,
        remote: &TrackRemote,
    ) -> Arc<Self> {
        let kind = match remote.kind() {
            webrtc::rtp_transceiver::rtp_codec::RTPCodecType::Audio => "audio",
            _ => "video",
        };
        Arc::new(Self {
            publisher,
            mid,
            source,
            kind,
            video: VideoCodec::from_mime(&remote.codec().capability.mime_type),
            codec: remote.codec().capability,
            simulcast: !remote.rid().is_empty(),
            layers: Mutex::default(),
            sinks: ArcSwap::from_pointee(Vec::new()),
            readers: AtomicUsize::new(0),
        })
    }

    pub fn is_video(&self) -> bool {
        self.video.is_some()
    }

    pub fn has_rid(&self, rid: &str) -> bool {
        lock(&self.layers).iter().any(|l| l.rid == rid)
    }

    /// The layers for the selector, lowest first.
    pub fn layer_options(&self, now: Instant) -> Vec<LayerOption> {
        let mut out: Vec<LayerOption> = lock(&self.layers).iter().map(|l| l.option(now)).collect();
        out.sort_by_key(|l| l.index);
        out
    }

    /// `(rid, index)` of every layer, lowest first.
    pub fn rids(&self) -> Vec<(String, u8)> {
        let mut out: Vec<(String, u8)> = lock(&self.layers)
            .iter()
            .map(|l| (l.rid.clone(), l.index))
            .collect();
        out.sort_by_key(|l| l.1);
        out
    }

    /// The rid of layer `index`; `None` for a track sent without simulcast (no rid), whose one
    /// layer is nothing to report.
    pub fn rid_of(&self, index: u8) -> Option<String> {
        lock(&self.layers)
            .iter()
            .find(|l| l.index == index && !l.rid.is_empty())
            .map(|l| l.rid.clone())
    }

    /// The top layer (what a new subscription aims for before the selector runs).
    pub fn top_layer(&self) -> u8 {
        lock(&self.layers)
            .iter()
            .map(|l| l.index)
            .max()
            .unwrap_or(0)
    }

    /// A new sink for this track. Video whose keyframes we can find starts on the first
    /// keyframe of `target`, simulcast or not: what comes before it is undecodable, and while
    /// the sink waits the selector's tick asks the publisher again (a lost PLI or keyframe
    /// would otherwise leave a plain track undecodable until the subscriber itself asks).
    /// Audio and other video forward from the first packet.
    pub fn new_sink(&self, tx: mpsc::Sender<Queued>, target: u8) -> Sink {
        let first = if self.video.is_some() {
            NO_LAYER
        } else {
            target
        };
        Sink::new(tx, self.video.is_some(), first, target)
    }

    pub fn add_sink(&self, sink: &Arc<Sink>) {
        self.sinks.rcu(|list| {
            let mut next = Vec::with_capacity(list.len() + 1);
            next.extend(list.iter().cloned());
            next.push(sink.clone());
            next
        });
    }

    pub fn remove_sink(&self, sink: &Arc<Sink>) {
        self.sinks.rcu(|list| {
            list.iter()
                .filter(|s| !Arc::ptr_eq(s, sink))
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    /// Which layers someone receives or waits for.
    pub fn needed_layers(&self) -> Vec<bool> {
        let rids = self.rids();
        let sinks = self.sinks.load();
        rids.iter()
            .map(|(_, i)| sinks.iter().any(|s| s.current() == *i || s.target() == *i))
            .collect()
    }

    /// Asks the publisher for a keyframe on every layer in use (throttled per layer).
    pub fn request_keyframe(&self) {
        let sinks = self.sinks.load();
        for layer in lock(&self.layers).iter() {
            let used = !self.simulcast
                || sinks
                    .iter()
                    .any(|s| s.current() == layer.index || s.target() == layer.index);
            if used {
                let _ = layer.keyframe_tx.try_send(());
            }
        }
    }

    /// Asks for a keyframe on one layer.
    pub fn request_layer_keyframe(&self, index: u8) {
        if let Some(layer) = lock(&self.layers).iter().find(|l| l.index == index) {
            let _ = layer.keyframe_tx.try_send(());
        }
    }

    /// Adds the layer `remote` carries and returns the futures of its reader and keyframe
    /// tasks; the caller spawns them. The reader ends when the publisher's track ends (the
    /// connection closed or the transceiver stopped); the keyframe task ends with it.
    pub fn add_layer(
        self: &Arc<Self>,
        remote: Arc<TrackRemote>,
        pc: Arc<RTCPeerConnection>,
        audio_level: Option<AudioLevelSink>,
        cfg: &ForwardConfig,
    ) -> (
        impl std::future::Future<Output = ()> + Send + 'static,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (keyframe_tx, keyframe_rx) = mpsc::channel(1);
        let rid = remote.rid().to_string();
        let layer = Arc::new(Layer {
            index: layer_index(&rid),
            rid,
            keyframe_tx,
            bytes: AtomicU64::new(0),
            width: AtomicU32::new(0),
            height: AtomicU32::new(0),
            meter: Mutex::default(),
        });
        lock(&self.layers).push(layer.clone());
        let first = self.readers.fetch_add(1, Ordering::AcqRel) == 0;
        let (ended_tx, ended_rx) = watch::channel(());
        let reader = read_layer(
            self.clone(),
            layer,
            first,
            remote.clone(),
            audio_level,
            cfg.metrics.clone(),
            ended_tx,
        );
        let keyframes = keyframe_task(
            keyframe_rx,
            ended_rx,
            pc,
            remote.ssrc(),
            cfg.keyframe_min_interval,
            cfg.metrics.clone(),
        );
        (reader, keyframes)
    }

    /// Every layer's reader has ended.
    pub fn is_ended(&self) -> bool {
        self.readers.load(Ordering::Acquire) == 0
    }

    /// One layer's reader ended; true when it was the last (the track is gone).
    pub fn reader_ended(&self) -> bool {
        self.readers.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// Where an audio track's RFC 6464 levels go: the extension id on the publisher's connection
/// and a callback with (level in -dBov, voice activity flag).
pub(crate) struct AudioLevelSink {
    pub ext_id: u8,
    pub on_level: Box<dyn Fn(u8) + Send + Sync>,
}

/// Settings the forwarding tasks need.
#[derive(Clone)]
pub(crate) struct ForwardConfig {
    pub queue_packets: usize,
    pub keyframe_min_interval: Duration,
    pub metrics: Arc<Metrics>,
}

async fn read_layer(
    up: Arc<UpTrack>,
    layer: Arc<Layer>,
    first: bool,
    remote: Arc<TrackRemote>,
    audio_level: Option<AudioLevelSink>,
    metrics: Arc<Metrics>,
    _ended: watch::Sender<()>,
) {
    // One published track, however many layers it has.
    let _gauge = first.then(|| GaugeGuard::new(&metrics, |m| &m.published_tracks));
    let mut buf = vec![0u8; 1500];
    loop {
        let mut pkt = match remote.read(&mut buf).await {
            Ok((pkt, _)) => pkt,
            Err(e) => {
                tracing::debug!(publisher = %up.publisher, mid = %up.mid, rid = %layer.rid, error = %e, "up track ended");
                break;
            }
        };
        layer
            .bytes
            .fetch_add(pkt.payload.len() as u64, Ordering::Relaxed);
        if let Some(level) = &audio_level {
            if let Some(ext) = pkt.header.get_extension(level.ext_id) {
                if let Some(&b) = ext.first() {
                    (level.on_level)(b & 0x7f);
                }
            }
        }
        let sinks = up.sinks.load();
        if sinks.is_empty() {
            continue;
        }
        strip_extensions(&mut pkt.header);
        let pkt = Arc::new(pkt);
        // Parsed at most once per packet, and only when some subscriber waits for a keyframe.
        let mut keyframe: Option<bool> = None;
        let mut keyframe_start = || {
            *keyframe.get_or_insert_with(|| {
                up.video
                    .is_some_and(|codec| codec.is_keyframe_start(&pkt.payload))
            })
        };
        for sink in sinks.iter() {
            match sink.push(layer.index, &pkt, &mut keyframe_start) {
                Push::Queued | Push::Ignored => {}
                Push::Dropped => inc(&metrics.dropped_packets),
                Push::NeedsKeyframe => {
                    inc(&metrics.dropped_packets);
                    inc(&metrics.video_resyncs);
                    let _ = layer.keyframe_tx.try_send(());
                }
            }
        }
        if keyframe == Some(true) && up.video == Some(VideoCodec::Vp8) {
            if let Some((w, h)) = vp8_keyframe_size(&pkt.payload) {
                layer.width.store(w, Ordering::Relaxed);
                layer.height.store(h, Ordering::Relaxed);
            }
        }
    }
}

/// Removes the publisher's header extensions: their ids are per connection and mean nothing
/// downstream, where webrtc-rs adds the subscriber's own (`sdes:mid`). The padding count goes
/// too: `rtp` keeps it from the parsed packet, and a stale one makes `marshal_size` disagree
/// with what `marshal_to` writes, so `write_rtp` fails ("marshal_to output size N, but expect
/// N+4") for every packet whose extensions the publisher had padded.
fn strip_extensions(header: &mut webrtc::rtp::header::Header) {
    header.extension = false;
    header.extension_profile = 0;
    header.extensions.clear();
    header.extensions_padding = 0;
}

/// Sends PLIs upstream, at most one per `min_interval`; a request inside the interval waits for
/// its end rather than being lost.
async fn keyframe_task(
    mut requests: mpsc::Receiver<()>,
    mut ended: watch::Receiver<()>,
    pc: Arc<RTCPeerConnection>,
    media_ssrc: u32,
    min_interval: Duration,
    metrics: Arc<Metrics>,
) {
    let mut throttle = KeyframeThrottle::new(min_interval);
    loop {
        tokio::select! {
            r = requests.recv() => if r.is_none() { break },
            _ = ended.changed() => break,
        }
        let wait = throttle.delay(Instant::now());
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ended.changed() => break,
            }
        }
        throttle.sent(Instant::now());
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        if pc.write_rtcp(&[Box::new(pli)]).await.is_ok() {
            inc(&metrics.plis_sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn plain(tx: mpsc::Sender<Queued>, video: bool) -> Sink {
        Sink::new(tx, video, 0, 0)
    }

    fn packet(seq: u16) -> SharedPacket {
        let mut p = Packet::default();
        p.header.sequence_number = seq;
        p.payload = Bytes::from_static(&[0]);
        Arc::new(p)
    }

    #[test]
    fn stripped_packets_take_new_extensions_and_marshal() {
        use webrtc::util::{Marshal, MarshalSize, Unmarshal};
        // A publisher's packet whose one-byte extensions (mid "0", 1 byte) end in padding.
        let mut incoming = Packet::default();
        incoming.header.version = 2;
        incoming
            .header
            .set_extension(3, Bytes::from_static(b"0"))
            .unwrap();
        incoming.payload = Bytes::from_static(&[0x10, 0, 0, 0, 0]);
        let wire = incoming.marshal().unwrap();
        let mut pkt = Packet::unmarshal(&mut &wire[..]).unwrap();
        assert!(
            pkt.header.extensions_padding > 0,
            "the parsed packet counts its padding"
        );
        strip_extensions(&mut pkt.header);
        // What webrtc-rs does for the subscriber's m-line: its own mid, another id.
        pkt.header
            .set_extension(1, Bytes::from_static(b"12"))
            .unwrap();
        let out = pkt.marshal().expect("sizes agree");
        assert_eq!(out.len(), pkt.marshal_size());
        let back = Packet::unmarshal(&mut &out[..]).unwrap();
        assert_eq!(back.header.get_extension(1).as_deref(), Some(&b"12"[..]));
        assert_eq!(back.header.get_extension(3), None);
    }

    #[test]
    fn full_video_queue_cuts_until_a_keyframe_fits() {
        let (tx, mut rx) = mpsc::channel(1);
        let sink = plain(tx, true);
        let (mut key, mut delta) = (|| true, || false);
        assert_eq!(sink.push(0, &packet(1), &mut delta), Push::Queued);
        assert_eq!(sink.push(0, &packet(2), &mut delta), Push::NeedsKeyframe);
        // Room again, but a delta frame cannot be decoded after the cut.
        rx.try_recv().unwrap();
        assert_eq!(sink.push(0, &packet(3), &mut delta), Push::Dropped);
        assert_eq!(sink.push(0, &packet(4), &mut key), Push::Queued);
        assert_eq!(sink.push(0, &packet(5), &mut delta), Push::NeedsKeyframe);
        rx.try_recv().unwrap();
        assert_eq!(sink.push(0, &packet(6), &mut delta), Push::Dropped);
        assert!(rx.try_recv().is_err(), "nothing after the keyframe start");
    }

    #[test]
    fn keyframe_start_lost_to_a_full_queue_asks_again() {
        let (tx, mut rx) = mpsc::channel(1);
        let sink = plain(tx, true);
        let (mut key, mut delta) = (|| true, || false);
        sink.push(0, &packet(1), &mut delta);
        assert_eq!(sink.push(0, &packet(2), &mut delta), Push::NeedsKeyframe);
        assert_eq!(sink.push(0, &packet(3), &mut key), Push::NeedsKeyframe);
        rx.try_recv().unwrap();
        assert_eq!(sink.push(0, &packet(4), &mut key), Push::Queued);
        assert_eq!(sink.push(0, &packet(5), &mut delta), Push::NeedsKeyframe);
    }

    #[test]
    fn full_audio_queue_drops_single_packets() {
        let (tx, mut rx) = mpsc::channel(1);
        let sink = plain(tx, false);
        let mut never = || -> bool { panic!("audio is never parsed") };
        assert_eq!(sink.push(0, &packet(1), &mut never), Push::Queued);
        assert_eq!(sink.push(0, &packet(2), &mut never), Push::Dropped);
        rx.try_recv().unwrap();
        assert_eq!(sink.push(0, &packet(3), &mut never), Push::Queued);
    }

    #[test]
    fn switch_happens_on_the_target_layers_keyframe_with_a_new_tag() {
        let (tx, mut rx) = mpsc::channel(8);
        let sink = Sink::new(tx, true, NO_LAYER, 2);
        let (mut key, mut delta) = (|| true, || false);
        assert_eq!(
            sink.push(2, &packet(1), &mut delta),
            Push::Ignored,
            "waits for a keyframe"
        );
        assert_eq!(
            sink.push(0, &packet(1), &mut key),
            Push::Ignored,
            "not the target"
        );
        assert_eq!(sink.push(2, &packet(2), &mut key), Push::Queued);
        assert_eq!(sink.current(), 2);
        let (first_tag, _) = rx.try_recv().unwrap();
        // Down to layer 0: layer 2 keeps flowing until layer 0's keyframe.
        sink.set_target(0);
        assert_eq!(sink.push(2, &packet(3), &mut delta), Push::Queued);
        assert_eq!(sink.push(0, &packet(50), &mut delta), Push::Ignored);
        assert_eq!(sink.push(0, &packet(51), &mut key), Push::Queued);
        assert_eq!(sink.push(2, &packet(4), &mut delta), Push::Ignored);
        let tags: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok().map(|q| q.0)).collect();
        assert_eq!(tags[0], first_tag);
        assert!(
            tags[1] > first_tag,
            "a switch is a new source for the rewriter"
        );
        // Hidden: nothing at once.
        sink.set_target(NO_LAYER);
        assert_eq!(sink.push(0, &packet(52), &mut delta), Push::Ignored);
        assert_eq!(sink.current(), NO_LAYER);
    }

    #[test]
    fn end_of_a_cut_is_a_new_tag() {
        let (tx, mut rx) = mpsc::channel(1);
        let sink = plain(tx, true);
        let (mut key, mut delta) = (|| true, || false);
        sink.push(0, &packet(1), &mut delta);
        let (before, _) = rx.try_recv().unwrap();
        sink.push(0, &packet(2), &mut delta);
        assert_eq!(sink.push(0, &packet(3), &mut delta), Push::NeedsKeyframe);
        rx.try_recv().unwrap();
        assert_eq!(sink.push(0, &packet(9), &mut key), Push::Queued);
        assert!(rx.try_recv().unwrap().0 > before);
    }
}
