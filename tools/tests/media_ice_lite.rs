//! The server is no reflector: it is ICE-lite, so the candidates a client names are never sent
//! connectivity checks. A full agent sent 8 checks to every one (100 candidates in a 6 KB
//! offer, 800 packets to 100 addresses).

mod media_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use media_support::*;
use sfu_lite::sfu::transport::engine_and_interceptors;
use sfu_lite::sfu::{IceCandidateInit, PcKind, PublishedTrack, Source};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use webrtc::api::APIBuilder;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;

/// Longer than a full agent's whole check schedule for a pair (7 retransmissions at the
/// 200 ms check interval): what a full agent would send to these targets it sends in here.
const OBSERVE: Duration = Duration::from_secs(4);
/// The most packets allowed to reach the named targets in all.
const ALLOWED: u64 = 4;

/// Binds `n` loopback UDP sockets that count every datagram they get.
async fn counting_targets(n: usize) -> (Vec<u16>, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let mut ports = Vec::new();
    for _ in 0..n {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        ports.push(socket.local_addr().unwrap().port());
        let count = count.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while socket.recv_from(&mut buf).await.is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    (ports, count)
}

fn host_candidate(foundation: usize, port: u16) -> String {
    format!("candidate:{foundation} 1 udp 2130706431 127.0.0.1 {port} typ host")
}

/// A real webrtc-rs video offer without candidates of its own, and with one `a=candidate` line
/// per port in its only m-section.
async fn offer_naming(ports: &[u16]) -> String {
    let (media, registry) = engine_and_interceptors().unwrap();
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build();
    let pc = api.new_peer_connection(Default::default()).await.unwrap();
    pc.add_transceiver_from_kind(RTPCodecType::Video, None)
        .await
        .unwrap();
    let mut sdp = pc.create_offer(None).await.unwrap().sdp;
    pc.close().await.unwrap();
    for (i, port) in ports.iter().enumerate() {
        sdp.push_str(&format!("a={}\r\n", host_candidate(i, *port)));
    }
    sdp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_a_client_names_get_no_connectivity_checks() {
    let (sfu, metrics) = sfu().await;
    let (ports, received) = counting_targets(110).await;
    let (embedded, trickled) = ports.split_at(100);
    let (events_tx, mut events) = mpsc::channel(64);
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let attacker = sfu.join("reflect", "attacker", events_tx).await.unwrap();
    let offer = offer_naming(embedded).await;
    assert!(offer.len() > 6000, "an offer of {} bytes", offer.len());
    let track = PublishedTrack {
        mid: "0".into(),
        source: Source::Camera,
    };
    attacker.publish_offer(offer, vec![track]).await.unwrap();
    for (i, port) in trickled.iter().enumerate() {
        let candidate = IceCandidateInit {
            candidate: host_candidate(100 + i, *port),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        };
        attacker
            .add_candidate(PcKind::Publisher, Some(candidate))
            .await
            .unwrap();
    }
    // Observing for a bounded window is the point here: an absence cannot be awaited.
    tokio::time::sleep(OBSERVE).await;
    let sent = received.load(Ordering::Relaxed);
    assert!(
        sent <= ALLOWED,
        "the server sent {sent} packets to 110 addresses a client named"
    );
    attacker.leave().await;
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}
