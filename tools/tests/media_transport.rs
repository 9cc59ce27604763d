//! Media transport settings: by default all media shares one UDP port with the HTTP port's
//! number; a port range gives each connection its own port from the range.

mod media_support;

use media_support::*;
use sfu_lite::config::Config;
use sfu_lite::server::start;
use sfu_lite::sfu::Source;

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
