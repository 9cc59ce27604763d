//! The media load run: ramp headless peers into rooms, let media flow for `--duration`,
//! sample once a second, tear everything down, and sum up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use super::args::{LoadArgs, VideoSpec};
use super::expect::{self, Expectation, Presence};
use super::report::{Summary, TimelinePoint};
use super::server_probe::ServerProbe;
use super::simulcast::{self as sim, SubscriberSample};
use super::stats::{since_epoch_ns, Samples, SendLog, StreamStats};
use crate::client::{HeadlessPeer, Hooks, MediaSource, PeerOptions, SimLayer, TrackSpec};
use crate::sfu::Source;
use crate::sync::lock;

/// How long one peer may take to join before it counts as failed.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long teardown may take.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(15);
/// Synthetic video packet size: typical of a VP8 stream's packets at a few hundred kbit/s.
const VIDEO_PAYLOAD: usize = 1000;

/// Send times and counts of one peer's published tracks, fixed when the peer is made (no lock).
#[derive(Debug, Default)]
struct PeerSends(Vec<TrackSends>);

#[derive(Debug)]
struct TrackSends {
    source: Source,
    log: SendLog,
    /// Packets sent: what a subscriber that never received this track lost.
    sent: AtomicU64,
}

impl PeerSends {
    fn new(sources: impl Iterator<Item = Source>) -> Self {
        Self(
            sources
                .map(|source| TrackSends {
                    source,
                    log: SendLog::default(),
                    sent: AtomicU64::new(0),
                })
                .collect(),
        )
    }

    fn get(&self, source: Source) -> Option<&SendLog> {
        self.track(source).map(|t| &t.log)
    }

    fn track(&self, source: Source) -> Option<&TrackSends> {
        self.0.iter().find(|t| t.source == source)
    }

    fn sent(&self) -> Vec<(Source, u64)> {
        self.0
            .iter()
            .map(|t| (t.source, t.sent.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Every publisher's send times by participant id, looked up by borrowed `&str` once per
/// stream (not per packet).
#[derive(Debug, Default)]
struct Registry(RwLock<HashMap<String, Arc<PeerSends>>>);

impl Registry {
    fn add(&self, id: &str, sends: Arc<PeerSends>) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), sends);
    }

    fn get(&self, id: &str) -> Option<Arc<PeerSends>> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}

/// Sends older than this are not matched (a stale slot of the send log).
const MAX_LATENCY_NS: u64 = 10_000_000_000;
/// After the measured window, how long its late packets may still arrive and count (and their
/// latency): retransmissions on their way when it closed. Well beyond the NACK generator's
/// give-up time (~270 ms, `transport.rs`), so nothing the server or a client would still
/// recover is counted lost for arriving after the report.
const LATE_GRACE: Duration = Duration::from_secs(1);

/// Run-wide totals, updated lock-free by every receiver.
#[derive(Debug, Default)]
struct Totals {
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// One stream (publisher track) as one subscriber sees it.
#[derive(Debug)]
struct Stream {
    stats: StreamStats,
    clock_rate: u64,
    sends: Option<Arc<PeerSends>>,
}

#[derive(Debug, Default)]
struct PeerState {
    streams: HashMap<String, HashMap<Source, Stream>>,
    latency_us: SamplesCell,
    interval_latency_us: SamplesCell,
}

/// `Samples` wrapped so `PeerState` can derive `Debug`/`Default`.
#[derive(Default)]
struct SamplesCell(Samples);

impl std::fmt::Debug for SamplesCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Samples")
    }
}

/// The measuring side of one subscriber peer.
#[derive(Debug)]
struct Observer {
    registry: Arc<Registry>,
    totals: Arc<Totals>,
    state: Mutex<PeerState>,
}

impl Observer {
    fn received(
        &self,
        publisher: &str,
        source: Source,
        packet: &webrtc::rtp::packet::Packet,
        at: Instant,
    ) {
        let len = packet.payload.len();
        self.totals.packets.fetch_add(1, Ordering::Relaxed);
        self.totals.bytes.fetch_add(len as u64, Ordering::Relaxed);
        let mut state = lock(&self.state);
        let state = &mut *state;
        if !state.streams.contains_key(publisher) {
            state.streams.insert(publisher.to_string(), HashMap::new());
        }
        let Some(by_source) = state.streams.get_mut(publisher) else {
            return;
        };
        let stream = by_source.entry(source).or_insert_with(|| Stream {
            stats: StreamStats::default(),
            clock_rate: match source {
                Source::Microphone | Source::ScreenAudio => 48_000,
                Source::Camera | Source::Screen => 90_000,
            },
            sends: None,
        });
        if stream.sends.is_none() {
            stream.sends = self.registry.get(publisher);
        }
        let at_ns = since_epoch_ns(at);
        let arrival_rtp = (at_ns as u128 * stream.clock_rate as u128 / 1_000_000_000) as u64;
        let seq = packet.header.sequence_number;
        let counted = stream
            .stats
            .on_packet(seq, packet.header.timestamp, arrival_rtp, len);
        if !counted {
            return;
        }
        let latency = stream
            .sends
            .as_ref()
            .and_then(|s| s.get(source)?.latency_us(seq, at_ns, MAX_LATENCY_NS));
        if let Some(us) = latency {
            state.latency_us.0.record(us);
            state.interval_latency_us.0.record(us);
        }
    }
}

struct Joined {
    peer: HeadlessPeer,
    observer: Arc<Observer>,
    join_ms: u64,
    room: usize,
    joined_at: Instant,
    sends: Arc<PeerSends>,
    /// Its downlink is capped (`--cap-subscribers`).
    capped: bool,
    /// `peer-N`, N its place in the join order (what the report names it by).
    name: String,
}

fn tracks(args: &LoadArgs, publishes: bool) -> Vec<TrackSpec> {
    if !publishes {
        return Vec::new();
    }
    let mut tracks = Vec::new();
    match args.video() {
        VideoSpec::Bitrate(top) if args.simulcast => tracks.push(TrackSpec {
            source: Source::Camera,
            media: MediaSource::SimulcastVideo(SimLayer::three_with_top(top)),
        }),
        VideoSpec::None => {}
        VideoSpec::Fixture => tracks.push(TrackSpec {
            source: Source::Camera,
            media: MediaSource::fixture_vp8(),
        }),
        VideoSpec::Bitrate(bps) => tracks.push(TrackSpec {
            source: Source::Camera,
            media: MediaSource::SyntheticVideo {
                packets_per_second: ((bps / 8) as usize / VIDEO_PAYLOAD).max(1) as u32,
                payload_len: VIDEO_PAYLOAD,
            },
        }),
    }
    if args.audio {
        tracks.push(TrackSpec {
            source: Source::Microphone,
            media: MediaSource::fixture_opus(),
        });
    }
    tracks
}

/// Runs the media load described by `args`; returns the summary.
pub async fn run(args: &LoadArgs, run_id: &str) -> anyhow::Result<Summary> {
    // Installed before anyone joins and removed when the run ends (drop).
    let _lossy = super::loss::lossy_link(args)?;
    let registry = Arc::new(Registry::default());
    let totals = Arc::new(Totals::default());
    let publishers = args.publisher_count();
    let video = publishers > 0 && args.video() != VideoSpec::None;
    sim::preflight(args)?;
    let probe = ServerProbe::new(&args.urls(), &args.server_pid);
    let tool_start = crate::procstat::sample_self();
    let bar = progress(args);

    // Ramp: peer i joins at i / ramp seconds; peer i is in room i % rooms and publishes when
    // i < publishers, so publishers spread evenly over the rooms.
    let started = Instant::now();
    let mut joins = JoinSet::new();
    for i in 0..args.peers {
        if args.ramp > 0.0 {
            let at = started + Duration::from_secs_f64(i as f64 / args.ramp);
            tokio::time::sleep_until(at.into()).await;
        }
        let room = format!("load-{run_id}-{}", i % args.rooms);
        let observer = Arc::new(Observer {
            registry: registry.clone(),
            totals: totals.clone(),
            state: Mutex::default(),
        });
        let tracks = tracks(args, i < publishers);
        let sends = Arc::new(PeerSends::new(tracks.iter().map(|t| t.source)));
        let hooks = Hooks {
            on_packet: Some({
                let observer = observer.clone();
                Arc::new(
                    move |publisher: &str, source, packet: &webrtc::rtp::packet::Packet, at| {
                        observer.received(publisher, source, packet, at)
                    },
                )
            }),
            on_sent: Some({
                let sends = sends.clone();
                // Simulcast layers have sequence spaces of their own and the server rewrites
                // them on a switch: a received number names no sent packet, so none is logged.
                let unmatched = args.simulcast.then_some(Source::Camera);
                Arc::new(move |source, seq, at| {
                    if let Some(track) = sends.track(source) {
                        if unmatched != Some(source) {
                            track.log.record(seq, since_epoch_ns(at));
                        }
                        track.sent.fetch_add(1, Ordering::Relaxed);
                    }
                })
            }),
        };
        let opts = PeerOptions {
            tracks,
            record_packets: false,
            hooks,
            ..PeerOptions::default()
        };
        let url = args.entry(i);
        let registry = registry.clone();
        let rooms = args.rooms;
        let capped = args.is_capped(i);
        joins.spawn(async move {
            let t0 = Instant::now();
            let joined = tokio::time::timeout(
                JOIN_TIMEOUT,
                HeadlessPeer::join(&url, &room, &format!("peer-{i}"), opts),
            )
            .await;
            match joined {
                Ok(Ok(peer)) => {
                    // Registered at once so the others match its packets from the first one.
                    registry.add(peer.id(), sends.clone());
                    Ok(Joined {
                        peer,
                        observer,
                        join_ms: t0.elapsed().as_millis() as u64,
                        room: i % rooms,
                        joined_at: Instant::now(),
                        sends,
                        capped,
                        name: format!("peer-{i}"),
                    })
                }
                Ok(Err(e)) => Err(format!("peer {i}: {e:#}")),
                Err(_) => Err(format!("peer {i}: no join within {JOIN_TIMEOUT:?}")),
            }
        });
        bar.set_message(format!("joining {}/{}", i + 1, args.peers));
    }

    let mut peers = Vec::new();
    let mut failures = Vec::new();
    let mut join_ms = Samples::default();
    while let Some(done) = joins.join_next().await {
        match done {
            Ok(Ok(j)) => {
                join_ms.record(j.join_ms);
                peers.push(j);
            }
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("join task: {e}")),
        }
    }
    for f in failures.iter().take(5) {
        tracing::warn!("{f}");
    }

    let caps = if args.cap_subscribers > 0 {
        let capped: Vec<&HeadlessPeer> =
            peers.iter().filter(|j| j.capped).map(|j| &j.peer).collect();
        match sim::cap_downlinks(&capped, args.cap_kbps).await {
            Ok(caps) => Some(caps),
            Err(e) => {
                leave_all(peers).await;
                return Err(e);
            }
        }
    } else {
        None
    };

    // Steady state: sample once a second.
    let server_start = probe.sample().await;
    let steady = Instant::now();
    let mut timeline = Vec::new();
    let (mut last_packets, mut last_bytes) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while steady.elapsed() < args.duration {
        tick.tick().await;
        let mut interval = Samples::default();
        for j in &peers {
            let mut s = lock(&j.observer.state);
            interval.merge(&s.interval_latency_us.0);
            s.interval_latency_us = SamplesCell::default();
        }
        let packets = totals.packets.load(Ordering::Relaxed);
        let bytes = totals.bytes.load(Ordering::Relaxed);
        let p = interval.percentiles(1000.0);
        let point = TimelinePoint {
            t_s: steady.elapsed().as_secs_f64(),
            recv_packets_per_s: (packets - last_packets) as f64,
            recv_kbps: (bytes - last_bytes) as f64 * 8.0 / 1000.0,
            latency_p50_ms: p.p50,
            latency_p99_ms: p.p99,
        };
        (last_packets, last_bytes) = (packets, bytes);
        bar.set_message(format!(
            "{} joined, {} failed | {:.0} pkt/s | latency p50 {:.1} ms p99 {:.1} ms",
            peers.len(),
            failures.len(),
            point.recv_packets_per_s,
            point.latency_p50_ms,
            point.latency_p99_ms
        ));
        bar.set_position(steady.elapsed().as_secs());
        timeline.push(point);
    }
    let steady_s = steady.elapsed().as_secs_f64();
    // The window closes here; its retransmissions still on the way get LATE_GRACE to arrive.
    for j in &peers {
        let mut s = lock(&j.observer.state);
        for stream in s.streams.values_mut().flat_map(|m| m.values_mut()) {
            stream.stats.close_window();
        }
    }
    tokio::time::sleep(LATE_GRACE).await;
    let server_end = probe.sample().await;
    bar.finish_and_clear();

    // Sum up before teardown so leaving does not count as loss.
    let mut summary = Summary {
        url: args.url.clone(),
        rooms: args.rooms,
        peers: args.peers,
        publishers,
        duration_s: steady_s,
        peers_joined: peers.len(),
        peers_failed: failures.len(),
        join_ms: join_ms.percentiles(1.0),
        timeline,
        loss_percent: args.loss,
        subscriber_nacks_sent: peers
            .iter()
            .map(|j| j.peer.counters().nacks_sent.load(Ordering::Relaxed))
            .sum(),
        ..Summary::default()
    };
    let mut latency = Samples::default();
    let mut first_frame = Samples::default();
    for j in &peers {
        // Per subscription: from the subscriber offer that first listed the stream to its first
        // keyframe (audio: first packet), so early joiners are not charged for waiting for
        // the others to arrive.
        for ((_, source), rec) in j.peer.received() {
            let first = match source {
                Source::Camera | Source::Screen => rec.first_keyframe_at,
                Source::Microphone | Source::ScreenAudio if !video => rec.first_packet_at,
                _ => None,
            };
            if let (Some(offered), Some(first)) = (rec.offered_at, first) {
                first_frame.record(first.saturating_duration_since(offered).as_millis() as u64);
            }
        }
    }
    let (mut streams, mut jitter_ms_sum) = (0u64, 0.0);
    for j in &peers {
        let s = lock(&j.observer.state);
        latency.merge(&s.latency_us.0);
        for stream in s.streams.values().flat_map(|m| m.values()) {
            streams += 1;
            summary.recv_packets += stream.stats.received;
            summary.lost_packets += stream.stats.lost();
            jitter_ms_sum += stream.stats.jitter() * 1000.0 / stream.clock_rate as f64;
        }
    }
    summary.latency_ms = latency.percentiles(1000.0);
    summary.first_frame_ms = first_frame.percentiles(1.0);
    let subs = expected_subscriptions(&peers);
    summary.subscriptions_expected = subs.expected;
    summary.subscriptions_started = subs.started;
    summary.lost_packets += subs.silent_lost_packets();
    for s in subs.silent.iter().take(5) {
        tracing::warn!(subscriber = %s.subscriber, publisher = %s.publisher, source = ?s.source, "subscription never started");
    }
    let expected = summary.recv_packets + summary.lost_packets;
    summary.loss_ratio = if expected > 0 {
        summary.lost_packets as f64 / expected as f64
    } else {
        0.0
    };
    let total_bytes = totals.bytes.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
    summary.recv_kbps_total = total_bytes as f64 * 8.0 / 1000.0 / elapsed;
    if streams > 0 {
        summary.recv_kbps_per_stream = summary.recv_kbps_total / streams as f64;
        summary.jitter_ms = jitter_ms_sum / streams as f64;
    }
    if let (Some(a), Some(b)) = (server_start, server_end) {
        summary.apply_server(&a, &b);
    }
    if args.simulcast || args.cap_subscribers > 0 {
        summary.subscribers = Some(sim::summarize(args, &subscriber_samples(&peers)));
    }
    // The caps go before teardown, so that leaving is not slowed by them.
    drop(caps);
    leave_all(peers).await;
    if let (Some(a), Some(b)) = (tool_start, crate::procstat::sample_self()) {
        summary.tool_cpu_s = (b.cpu - a.cpu).as_secs_f64();
        if summary.recv_packets > 0 {
            summary.tool_cpu_us_per_recv_packet =
                Some(summary.tool_cpu_s * 1e6 / summary.recv_packets as f64);
        }
    }
    Ok(summary)
}

/// Leaves every peer, bounded.
async fn leave_all(peers: Vec<Joined>) {
    let leaving = futures_util::future::join_all(peers.into_iter().map(|j| j.peer.leave()));
    if tokio::time::timeout(LEAVE_TIMEOUT, leaving).await.is_err() {
        tracing::warn!("some peers did not leave within {LEAVE_TIMEOUT:?}");
    }
}

/// What each subscriber received, for the per-subscriber figures of [`sim`].
fn subscriber_samples(peers: &[Joined]) -> Vec<SubscriberSample> {
    peers
        .iter()
        .map(|j| {
            let state = lock(&j.observer.state);
            let streams = state.streams.values().flat_map(|m| m.iter());
            let mut sample = SubscriberSample {
                id: format!("{} ({})", j.name, j.peer.id()),
                capped: j.capped,
                layer_events: j
                    .peer
                    .layer_events()
                    .into_iter()
                    .map(|(mid, rid, _)| (mid, rid))
                    .collect(),
                video_gaps_ms: Vec::new(),
                received: 0,
                lost: 0,
            };
            for (source, stream) in streams {
                sample.received += stream.stats.received;
                sample.lost += stream.stats.lost();
                if matches!(source, Source::Camera | Source::Screen) {
                    let ms = stream.stats.max_gap() as f64 * 1000.0 / stream.clock_rate as f64;
                    sample.video_gaps_ms.push(ms);
                }
            }
            sample
        })
        .collect()
}

/// The subscriptions the joined peers should have (see [`expect`]), checked against what each
/// observer received.
fn expected_subscriptions(peers: &[Joined]) -> Expectation {
    let end = Instant::now();
    let presence: Vec<Presence> = peers
        .iter()
        .map(|j| Presence {
            id: j.peer.id().to_string(),
            room: j.room,
            present_s: end.saturating_duration_since(j.joined_at).as_secs_f64(),
            tracks: j.sends.sent(),
        })
        .collect();
    let started = |sub: &Presence, publisher: &str, source: Source| {
        let Some(j) = peers.iter().find(|j| j.peer.id() == sub.id) else {
            return false;
        };
        let state = lock(&j.observer.state);
        state
            .streams
            .get(publisher)
            .and_then(|m| m.get(&source))
            .is_some_and(|s| s.stats.received > 0)
    };
    expect::subscriptions(&presence, started)
}

fn progress(args: &LoadArgs) -> ProgressBar {
    if args.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(args.duration.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
