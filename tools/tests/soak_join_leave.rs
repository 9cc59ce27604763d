//! A bounded soak as a guard against slow leaks: 200 rooms' lives, each two real webrtc-rs
//! headless participants that join over Socket.IO, publish, receive each other's media and
//! leave. Afterwards every gauge at `/metrics` is 0 and the process has the file descriptors
//! it had before the first cycle.
//!
//! Cycles overlap (a few rooms at a time) to keep the run short; the bound on each wait is
//! generous because this machine is shared.

#[path = "../../tests/common/mod.rs"]
mod common;
mod media_support;

use std::time::Duration;

use common::{base_url, server_with, stop};
use media_support::packets_from;
use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{HeadlessPeer, MediaSource, PeerOptions, TrackSpec};

/// Rooms created, filled with media and emptied.
const CYCLES: usize = 200;
/// Rooms alive at once.
const OVERLAP: usize = 4;
/// Bound of one cycle (join, first packets both ways, leave).
const CYCLE_BOUND: Duration = Duration::from_secs(30);

fn publisher() -> PeerOptions {
    PeerOptions {
        tracks: vec![TrackSpec {
            source: Source::Camera,
            media: MediaSource::SyntheticVideo {
                packets_per_second: 50,
                payload_len: 200,
            },
        }],
        record_packets: false,
        ..PeerOptions::default()
    }
}

/// Open file descriptors of this process (the server runs in it, and so do the clients).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// One room's life: two publishers join, each receives the other's video, both leave.
async fn cycle(url: String, n: usize) {
    let room = format!("soak-{n}");
    let a = HeadlessPeer::join(&url, &room, "a", publisher())
        .await
        .expect("a joins");
    let b = HeadlessPeer::join(&url, &room, "b", publisher())
        .await
        .expect("b joins");
    for (rx, tx) in [(&a, &b), (&b, &a)] {
        let from = tx.id().to_string();
        rx.wait_until(CYCLE_BOUND, "the other's video", |p| {
            packets_from(p, &from, Source::Camera) > 0
        })
        .await
        .unwrap_or_else(|e| panic!("cycle {n}: {e:#}"));
    }
    a.leave().await;
    b.leave().await;
}

async fn run_cycles(url: &str, range: std::ops::Range<usize>) {
    let mut running = tokio::task::JoinSet::new();
    for n in range {
        if running.len() >= OVERLAP {
            let done: Result<(), _> = running.join_next().await.unwrap().expect("cycle");
            done.expect("cycle within its bound");
        }
        running.spawn(tokio::time::timeout(
            CYCLE_BOUND * 2,
            cycle(url.to_string(), n),
        ));
    }
    while let Some(done) = running.join_next().await {
        done.expect("cycle").expect("cycle within its bound");
    }
}

/// sfu-lite's gauges as `/metrics` shows them: `sfu_<name> <value>` lines of type gauge (the
/// standard `process_*` gauges, RSS and open fds, are not counts of owned things).
async fn scraped_gauges(url: &str) -> Vec<(String, i64)> {
    let text = reqwest::get(format!("{url}metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("/metrics body");
    let gauges: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" gauge"))
        .filter(|name| name.starts_with("sfu_"))
        .collect();
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(name, _)| gauges.contains(name))
        .map(|(name, v)| {
            (
                name.to_string(),
                v.parse::<f64>().unwrap_or(f64::NAN) as i64,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_media_join_leave_cycles_leave_no_gauge_and_no_fd_behind() {
    // 400 sessions from one address in well under a minute: the per-address limits are for
    // strangers, not for this test of what a session leaves behind.
    let server = server_with(|c| {
        c.server.max_connections_per_address = 0;
        c.server.handshakes_per_address_per_second = 0;
    })
    .await;
    let url = base_url(&server);
    // One warm-up cycle first: what the runtime, the resolver and the UDP mux open once and
    // keep is part of the baseline, not a leak.
    run_cycles(&url, 0..1).await;
    common::assert_gauges_zero(&server.metrics).await;
    let fds_before = open_fds();
    eprintln!("open fds after the warm-up cycle: {fds_before}");

    run_cycles(&url, 1..CYCLES + 1).await;

    common::assert_gauges_zero(&server.metrics).await;
    let scraped = scraped_gauges(&url).await;
    for name in [
        "sfu_rooms",
        "sfu_participants",
        "sfu_peer_connections",
        "sfu_published_tracks",
        "sfu_subscriptions",
        "sfu_tasks",
    ] {
        assert!(
            scraped.iter().any(|(n, _)| n == name),
            "{name} missing from /metrics"
        );
    }
    let live: Vec<_> = scraped.iter().filter(|(_, v)| *v != 0).collect();
    assert!(live.is_empty(), "/metrics gauges not zero: {live:?}");
    // Sockets close when their owners' tasks end, a moment after the gauges settle: bounded.
    common::gauges::assert_settles_to_zero(|| {
        let extra = open_fds() as i64 - fds_before as i64;
        vec![("fds above the start".into(), extra.max(0))]
    })
    .await;
    stop(server).await;
}
