//! Media transport settings: by default all media shares one UDP port with the HTTP port's
//! number; a port range gives each connection its own port from the range.

mod media_support;

use media_support::*;
use sfu_lite::config::Config;
use sfu_lite::server::start;
use std::sync::atomic::Ordering;

use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{HeadlessPeer, PeerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_udp_port_defaults_to_the_http_port_number() {
    let mut config = Config::embedded();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    let server = start(config).await.expect("server starts");
    let udp = server.sfu.udp_addr().expect("muxed media socket");
    assert_eq!(udp.port(), server.local_addr.port());
    assert!(udp.ip().is_loopback(), "media must stay on loopback: {udp}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_with_a_port_range() {
    let mut config = media_config();
    config.port_range = "47000-47100".into();
    let (sfu, metrics) = sfu_with(config).await;
    assert!(sfu.udp_addr().is_none());
    let alice = join(&sfu, "range", "alice", publishing(vec![audio(50, 100)])).await;
    let bob = join(&sfu, "range", "bob", publishing(vec![])).await;
    bob.wait_until(WAIT, "alice's audio", |p| {
        packets_from(p, "alice", Source::Microphone) >= 20
    })
    .await
    .unwrap();
    assert_contiguous_and_identical(&bob, &alice, Source::Microphone);
    alice.leave().await;
    bob.leave().await;
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}

/// A publisher that numbers its packets transport-wide (as browsers do) gets transport-cc
/// feedback from the server while they arrive: its send-side estimator lives on it. One that
/// does not number them gets none (so the count comes from the numbering, nothing else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_numbering_packets_transport_wide_gets_feedback() {
    let (sfu, metrics) = sfu_with(media_config()).await;
    let numbered = PeerOptions {
        transport_cc: true,
        ..publishing(vec![video(50, 600)])
    };
    let alice = join(&sfu, "twcc", "alice", numbered).await;
    let bob = join(&sfu, "twcc", "bob", publishing(vec![video(50, 600)])).await;
    let feedback = |p: &HeadlessPeer| {
        p.published()[0]
            .log
            .transport_feedback
            .load(Ordering::Relaxed)
    };
    alice
        .wait_until(WAIT, "transport-wide feedback", |p| feedback(p) >= 5)
        .await
        .unwrap();
    bob.wait_until(WAIT, "bob's video at alice", |_| {
        packets_from(&alice, "bob", Source::Camera) >= 50
    })
    .await
    .unwrap();
    assert_eq!(
        feedback(&bob),
        0,
        "feedback for packets without the extension"
    );
    alice.leave().await;
    bob.leave().await;
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}

/// While media flows, a subscriber gets RTCP sender reports for what it receives (lip sync and
/// round-trip times need them), and what they count is what the server sent it: more than
/// nothing, never more than the publisher sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_gets_sender_reports_while_media_flows() {
    let (sfu, metrics) = sfu_with(media_config()).await;
    let alice = join(&sfu, "sr", "alice", publishing(vec![video(50, 600)])).await;
    let reading = PeerOptions {
        read_sender_reports: true,
        ..Default::default()
    };
    let bob = join(&sfu, "sr", "bob", reading).await;
    let key = ("alice".to_string(), Source::Camera);
    bob.wait_until(WAIT, "two sender reports for alice's camera", |p| {
        p.received()
            .get(&key)
            .is_some_and(|r| r.sender_reports >= 2)
    })
    .await
    .unwrap();
    let counted = u64::from(bob.received()[&key].last_sr_packet_count.unwrap());
    let sent = alice.published()[0].log.packets.load(Ordering::Relaxed);
    assert!(
        counted > 0 && counted <= sent,
        "SR counts {counted}, alice sent {sent}"
    );
    alice.leave().await;
    bob.leave().await;
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}
