//! Shared set-up for the media tests: an in-process SFU on loopback, headless peers, and the
//! checks every test makes (contiguous, byte-identical streams; gauges back to zero).
#![allow(dead_code)]

#[path = "../../../tests/common/gauges.rs"]
pub mod gauges;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sfu_lite::config::{Config, MediaConfig};
use sfu_lite::metrics::Metrics;
use sfu_lite::sfu::{Sfu, Source};
use sfu_lite_tools::client::{HeadlessPeer, MediaSource, PeerOptions, TrackSpec};

pub const WAIT: Duration = Duration::from_secs(20);

pub fn media_config() -> MediaConfig {
    Config::embedded().media
}

/// Logs (also webrtc-rs's `log` records) go to the test's output, filtered by `RUST_LOG`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// An SFU whose media socket is an ephemeral loopback UDP port.
pub async fn sfu_with(config: MediaConfig) -> (Sfu, Arc<Metrics>) {
    init_tracing();
    let metrics = Metrics::new();
    let sfu = Sfu::new(&config, "127.0.0.1:0".parse().unwrap(), metrics.clone())
        .await
        .expect("sfu starts");
    (sfu, metrics)
}

pub async fn sfu() -> (Sfu, Arc<Metrics>) {
    sfu_with(media_config()).await
}

pub fn video(pps: u32, len: usize) -> TrackSpec {
    TrackSpec {
        source: Source::Camera,
        media: MediaSource::SyntheticVideo {
            packets_per_second: pps,
            payload_len: len,
        },
    }
}

pub fn audio(pps: u32, len: usize) -> TrackSpec {
    TrackSpec {
        source: Source::Microphone,
        media: MediaSource::SyntheticAudio {
            packets_per_second: pps,
            payload_len: len,
        },
    }
}

pub fn publishing(tracks: Vec<TrackSpec>) -> PeerOptions {
    PeerOptions {
        tracks,
        ..Default::default()
    }
}

pub async fn join(sfu: &Sfu, room: &str, id: &str, opts: PeerOptions) -> HeadlessPeer {
    HeadlessPeer::join_direct(sfu, room, id, opts)
        .await
        .expect("peer joins")
}

/// Packets `receiver` has from `publisher`'s `source`.
pub fn packets_from(receiver: &HeadlessPeer, publisher: &str, source: Source) -> u64 {
    receiver
        .received()
        .get(&(publisher.to_string(), source))
        .map(|r| r.packets)
        .unwrap_or(0)
}

/// Asserts that what `receiver` got from `publisher`'s `source` is a run of consecutive
/// sequence numbers whose payloads are byte-identical (by fingerprint) to what was sent.
/// Returns how many packets were checked.
/// Waits (bounded by `WAIT` per pair) until every peer has received at least `video` camera and
/// `audio` microphone packets from every other peer.
pub async fn wait_for_media_between(peers: &[HeadlessPeer], video: u64, audio: u64) {
    wait_for_each_pair(peers, |_, _| (video, audio)).await
}

/// Waits (bounded by `WAIT` per pair) until every peer has `more` camera and microphone
/// packets from every other peer beyond what it has when called.
pub async fn wait_for_more_media_between(peers: &[HeadlessPeer], more: u64) {
    wait_for_each_pair(peers, |rx, who| {
        (
            packets_from(rx, who, Source::Camera) + more,
            packets_from(rx, who, Source::Microphone) + more,
        )
    })
    .await
}

/// Every (receiver, publisher) pair's (camera, microphone) targets, all taken first, then
/// waited for one pair after the other.
async fn wait_for_each_pair(
    peers: &[HeadlessPeer],
    target: impl Fn(&HeadlessPeer, &str) -> (u64, u64),
) {
    let mut targets = Vec::new();
    for rx in peers {
        for tx in peers {
            if rx.id() != tx.id() {
                let who = tx.id().to_string();
                let (video, audio) = target(rx, &who);
                targets.push((rx, who, video, audio));
            }
        }
    }
    for (rx, who, video, audio) in targets {
        rx.wait_until(WAIT, &format!("media from {who}"), |p| {
            packets_from(p, &who, Source::Camera) >= video
                && packets_from(p, &who, Source::Microphone) >= audio
        })
        .await
        .unwrap();
    }
}

pub fn assert_contiguous_and_identical(
    receiver: &HeadlessPeer,
    publisher: &HeadlessPeer,
    source: Source,
) -> usize {
    let received = receiver.received();
    let rec = received
        .get(&(publisher.id().to_string(), source))
        .unwrap_or_else(|| panic!("{} got nothing from {}", receiver.id(), publisher.id()));
    let sent = sent_hashes(publisher, source);
    assert!(!rec.log.is_empty());
    for pair in rec.log.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0.wrapping_add(1),
            "{} from {} {:?}: gap or reorder after seq {}",
            receiver.id(),
            publisher.id(),
            source,
            pair[0].0
        );
    }
    for (seq, hash) in &rec.log {
        assert_eq!(
            sent.get(seq),
            Some(hash),
            "{} from {} {:?}: payload of seq {seq} differs from what was sent",
            receiver.id(),
            publisher.id(),
            source
        );
    }
    rec.log.len()
}

/// Payload hash of every packet `publisher` sent on `source`, by sequence number.
pub fn sent_hashes(publisher: &HeadlessPeer, source: Source) -> HashMap<u16, u64> {
    publisher
        .published()
        .iter()
        .find(|p| p.source == source)
        .expect("publisher has the source")
        .log
        .packets()
        .into_iter()
        .map(|p| (p.seq, p.hash))
        .collect()
}

/// Waits (bounded) until every gauge the SFU owns, and its room table, are back to zero.
pub async fn assert_gauges_return_to_zero(metrics: &Metrics, sfu: &Sfu) {
    gauges::assert_settles_to_zero(|| {
        let mut counts = gauges::gauges(metrics);
        counts.push(("sfu rooms".into(), sfu.room_count() as i64));
        counts
    })
    .await;
}

/// Whether every layer switch `p` saw after its first switch to `rid` was to `rid` (it may start
/// on whichever layer of the publisher reached the server first); the layers seen if not.
pub fn stayed_on_once_reached(p: &HeadlessPeer, rid: &str) -> Result<(), Vec<String>> {
    let rids: Vec<String> = p.layer_events().into_iter().map(|(_, r, _)| r).collect();
    if rids.iter().skip_while(|r| *r != rid).all(|r| r == rid) {
        Ok(())
    } else {
        Err(rids)
    }
}
