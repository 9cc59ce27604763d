//! A subscriber whose downlink cannot carry the stream: its queue really fills (its server
//! socket is capped with tc, so the socket buffer fills and its writer blocks), and
//! - the other subscribers of the same track lose nothing;
//! - the capped one loses whole frames: after every gap its video resumes at a keyframe, which
//!   the server asked the publisher for;
//! - once the cap is lifted it decodes again: a keyframe and an unbroken run of frames.
//!
//! `media.port_range` gives each PeerConnection its own server socket, so the cap (on that
//! socket's source port) touches this one subscriber connection only. The tc qdisc covers the
//! namespace's `lo`: one test in this file, run as root in its own namespace.

mod media_support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media_support::*;
use sfu_lite::metrics::Metrics;
use sfu_lite::sfu::codec::VideoCodec;
use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{HeadlessPeer, Hooks, MediaSource, PeerOptions, TrackSpec};
use sfu_lite_tools::netshape::Shaper;

/// Far below what the publisher sends (VP8 clip plus 200 audio packets/s of 400 bytes).
const CAP_KBIT: u32 = 16;
/// The rate after the cap: several times the stream, so the backlog drains in about a second.
const RECOVERED_KBIT: u32 = 2000;

/// (sequence number, starts a keyframe) of every camera packet, in arrival order.
type Arrivals = Arc<Mutex<Vec<(u16, bool)>>>;

fn recording_arrivals() -> (PeerOptions, Arrivals) {
    let arrivals = Arrivals::default();
    let log = arrivals.clone();
    let hooks = Hooks {
        on_packet: Some(Arc::new(move |_from, source, pkt, _at| {
            if source == Source::Camera {
                let key = VideoCodec::Vp8.is_keyframe_start(&pkt.payload);
                log.lock().unwrap().push((pkt.header.sequence_number, key));
            }
        })),
        on_sent: None,
    };
    let opts = PeerOptions {
        hooks,
        ..Default::default()
    };
    (opts, arrivals)
}

/// Sequence numbers extended to 64 bits, in arrival order: each 16-bit number is unwrapped
/// against the previous arrival.
fn extended(arrivals: &[(u16, bool)]) -> Vec<i64> {
    let mut last: Option<i64> = None;
    arrivals
        .iter()
        .map(|&(seq, _)| {
            let ext = match last {
                None => i64::from(seq),
                Some(prev) => prev + i64::from(seq.wrapping_sub(prev as u16) as i16),
            };
            last = Some(ext);
            ext
        })
        .collect()
}

/// Arrivals as (extended sequence number, keyframe start), in sequence order, duplicates
/// removed.
fn by_sequence(arrivals: &[(u16, bool)]) -> Vec<(i64, bool)> {
    let keys = arrivals.iter().map(|(_, key)| *key);
    let map: std::collections::BTreeMap<i64, bool> =
        extended(arrivals).into_iter().zip(keys).collect();
    map.into_iter().collect()
}

/// `receiver` got `publisher`'s `source` byte-identical, missing at most one packet in 500 of
/// the span it received.
fn assert_nearly_all_identical(receiver: &HeadlessPeer, publisher: &HeadlessPeer, source: Source) {
    let received = receiver.received();
    let rec = received
        .get(&(publisher.id().to_string(), source))
        .unwrap_or_else(|| panic!("{} got nothing from {}", receiver.id(), publisher.id()));
    let sent = sent_hashes(publisher, source);
    let seqs: Vec<(u16, bool)> = rec.log.iter().map(|(seq, _)| (*seq, false)).collect();
    let got = by_sequence(&seqs);
    let span = (got.last().unwrap().0 - got[0].0 + 1) as usize;
    let missing = span - got.len();
    assert!(
        missing * 500 <= span,
        "{} missed {missing} of {span} {source:?} packets from {}",
        receiver.id(),
        publisher.id()
    );
    for (seq, hash) in &rec.log {
        assert_eq!(sent.get(seq), Some(hash), "{source:?} seq {seq} differs");
    }
}

/// Waits (bounded) until `cond` holds on the server's counters.
async fn wait_metric(metrics: &Metrics, what: &str, cond: impl Fn(&Metrics) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond(metrics) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_subscriber_loses_whole_frames_and_recovers_while_others_are_unaffected() {
    let mut config = media_config();
    config.port_range = "47500-47600".into();
    config.subscriber_queue_packets = 128;
    let (sfu, metrics) = sfu_with(config).await;
    let tracks = vec![
        TrackSpec {
            source: Source::Camera,
            media: MediaSource::fixture_vp8(),
        },
        audio(200, 400),
    ];
    let alice = join(&sfu, "cap", "alice", publishing(tracks)).await;
    let bob = join(&sfu, "cap", "bob", PeerOptions::default()).await;
    let carol = join(&sfu, "cap", "carol", PeerOptions::default()).await;
    let (opts, arrivals) = recording_arrivals();
    let capped = join(&sfu, "cap", "capped", opts).await;
    for p in [&bob, &carol, &capped] {
        p.wait_until(WAIT, "alice's video and audio", |p| {
            packets_from(p, "alice", Source::Camera) >= 30
                && packets_from(p, "alice", Source::Microphone) >= 100
        })
        .await
        .unwrap();
    }
    let port = capped
        .subscriber_server_addr()
        .await
        .expect("connected subscriber")
        .port();
    for p in [&bob, &carol] {
        assert_ne!(p.subscriber_server_addr().await.unwrap().port(), port);
    }

    let mut shaper = Shaper::new();
    let cap = shaper
        .cap_from_port(port, CAP_KBIT)
        .expect("tc on lo (root in a network namespace)");
    let camera = alice
        .published()
        .iter()
        .find(|p| p.source == Source::Camera)
        .unwrap()
        .log
        .clone();
    let requests = || camera.keyframe_requests.load(Ordering::Relaxed);
    let requests_before = requests();
    let dropped = metrics.dropped_packets.load(Ordering::Relaxed);
    wait_metric(&metrics, "packets dropped at a full queue", |m| {
        m.dropped_packets.load(Ordering::Relaxed) > dropped
    })
    .await;
    // Stay capped until the server has asked alice for a keyframe.
    let deadline = tokio::time::Instant::now() + WAIT;
    while requests() == requests_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no keyframe request reached alice"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The link gets better rather than unlimited: a lifted cap would hand the client the whole
    // backlog of the throttled socket at once, more than a receive buffer holds.
    shaper.set_rate(cap, RECOVERED_KBIT).unwrap();

    let lifted_at = arrivals.lock().unwrap().len();
    capped
        .wait_until(WAIT, "a keyframe and 60 packets after it", |_| {
            let a = arrivals.lock().unwrap();
            let after = &a[lifted_at.min(a.len())..];
            after
                .iter()
                .rposition(|(_, key)| *key)
                .is_some_and(|k| after.len() - k >= 60)
        })
        .await
        .unwrap();

    // The others are unaffected, audio and video: every packet they got is what alice sent,
    // and they miss at most what a loaded loopback itself may drop (one in 500), far from
    // the whole frames the capped one loses.
    for p in [&bob, &carol] {
        assert_nearly_all_identical(p, &alice, Source::Camera);
        assert_nearly_all_identical(p, &alice, Source::Microphone);
    }
    // The capped one lost whole frames (counted as cuts below): every hole left in what it
    // got (a packet retransmitted after a NACK fills its hole) ends at a keyframe start.
    let got = by_sequence(&arrivals.lock().unwrap());
    let all = arrivals.lock().unwrap().clone();
    let lifted_seq = extended(&all)[lifted_at.min(all.len() - 1)];
    let mut holes = 0;
    for (prev, (seq, key)) in got.iter().zip(got.iter().skip(1)) {
        if *seq != prev.0 + 1 {
            holes += 1;
            assert!(
                key,
                "after a hole ({} -> {seq}) the capped subscriber got a packet that is no keyframe start",
                prev.0
            );
        }
    }
    // The cut's own gap is closed by the down track's rewriting (issue 10: the keyframe that
    // ends a cut continues the sequence), so what is left are holes the network made, each
    // ending at a keyframe start; the cut itself is seen in the counters below.
    let _ = holes;
    // And it decodes again: after the lift, a keyframe start followed by at least 60 packets
    // without a hole.
    let recovered = (0..got.len()).any(|i| {
        got[i].1
            && got[i].0 >= lifted_seq
            && got.len() - i >= 60
            && got[i..i + 60].windows(2).all(|w| w[1].0 == w[0].0 + 1)
    });
    assert!(recovered, "no keyframe and unbroken run after the lift");
    assert!(metrics.video_resyncs.load(Ordering::Relaxed) > 0);
    assert!(metrics.plis_sent.load(Ordering::Relaxed) > 0);

    drop(shaper);
    for p in [alice, bob, carol, capped] {
        p.leave().await;
    }
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}
