//! Lifecycle and bad input in the SFU core: nothing outlives its owner over many join/leave
//! cycles, a participant whose media never connects is removed after the timeout, and bad SDP
//! or candidates are refused with typed errors while the participant stays usable.

mod media_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use media_support::*;
use sfu_lite::config::Config;
use sfu_lite::sfu::{
    IceCandidateInit, Participant, PcKind, PublishedTrack, SfuError, SfuEvent, Source,
};
use tokio::sync::{mpsc, watch};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::udp_mux::{UDPMuxDefault, UDPMuxParams};
use webrtc::ice::udp_network::UDPNetwork;
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::{RTCRtpTransceiver, RTCRtpTransceiverInit};
use webrtc::util::Conn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gauge_returns_to_zero_after_100_join_leave_cycles() {
    let (sfu, metrics) = sfu().await;
    // A member who stays throughout sees every cycle's tracks come and go.
    let host = join(&sfu, "cycles", "host", publishing(vec![audio(50, 100)])).await;
    for i in 0..100 {
        let id = format!("guest{i}");
        let guest = join(&sfu, "cycles", &id, publishing(vec![audio(50, 100)])).await;
        guest
            .wait_until(WAIT, "the host's audio", |p| {
                packets_from(p, "host", Source::Microphone) > 0
            })
            .await
            .unwrap();
        guest.leave().await;
    }
    host.wait_until(WAIT, "an offer without guests", |p| {
        p.offers().last().is_some_and(|t| t.is_empty())
    })
    .await
    .unwrap();
    host.leave().await;
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    assert_eq!(metrics.peer_connections.load(Ordering::Relaxed), 0);
    sfu.close().await;
}

/// A real offer from a webrtc-rs peer that will never answer or send candidates.
async fn silent_offer() -> (RTCPeerConnection, String) {
    let client = RawClient::new(SettingEngine::default()).await;
    client.add_sendonly(RTPCodecType::Audio).await;
    let offer = client.pc.create_offer(None).await.unwrap();
    (client.pc, offer.sdp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_that_never_connects_media_is_removed_after_timeout() {
    let mut config = Config::embedded().media;
    config.connect_timeout_secs = 1;
    let (sfu, metrics) = sfu_with(config).await;
    let (events_tx, mut events) = mpsc::channel(64);
    let participant = sfu.join("silent", "ghost", events_tx).await.unwrap();
    let (client_pc, offer) = silent_offer().await;
    participant
        .publish_offer(offer, vec![])
        .await
        .expect("offer answered");
    let reason = closed_reason(&mut events).await;
    assert!(reason.contains("did not connect"), "{reason}");
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    // Calls after removal are refused, and leaving again is harmless.
    assert_eq!(
        participant.subscribe_answer("v=0".into()).await,
        Err(SfuError::Gone)
    );
    participant.leave().await;
    let _ = client_pc.close().await;
    sfu.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sdp_and_bad_candidates_get_typed_errors_and_the_participant_survives() {
    let (sfu, metrics) = sfu().await;
    let (events_tx, _events) = mpsc::channel(64);
    let p = sfu.join("bad", "mallory", events_tx).await.unwrap();
    assert!(matches!(
        p.publish_offer("not an sdp".into(), vec![]).await,
        Err(SfuError::BadSdp(_))
    ));
    assert!(matches!(
        p.publish_offer("v=0\r\n".repeat(100_000), vec![]).await,
        Err(SfuError::BadSdp(_))
    ));
    let too_many = (0..10)
        .map(|i| PublishedTrack {
            mid: i.to_string(),
            source: Source::Camera,
        })
        .collect();
    assert_eq!(
        p.publish_offer("v=0".into(), too_many).await,
        Err(SfuError::TooManyTracks(4))
    );
    assert_eq!(
        p.subscribe_answer("v=0".into()).await,
        Err(SfuError::NoPendingOffer)
    );
    let cand = |c: &str| {
        Some(IceCandidateInit {
            candidate: c.into(),
            sdp_mid: None,
            sdp_mline_index: Some(0),
            username_fragment: None,
        })
    };
    for bad in [
        "candidate:garbage",
        "candidate:1 1 udp 1 999.1.1.1 9 typ host",
        &format!("candidate:{}", "x".repeat(5000)),
    ] {
        assert!(
            matches!(
                p.add_candidate(PcKind::Publisher, cand(bad)).await,
                Err(SfuError::BadCandidate(_))
            ),
            "{bad:?} accepted"
        );
    }
    // End-of-candidates markers are fine.
    p.add_candidate(PcKind::Subscriber, None).await.unwrap();
    p.add_candidate(PcKind::Subscriber, cand("")).await.unwrap();
    // After all that, a real offer is still answered.
    let (client_pc, offer) = silent_offer().await;
    let answer = p.publish_offer(offer, vec![]).await.expect("answered");
    assert!(answer.contains("a=fingerprint"));
    p.add_candidate(
        PcKind::Publisher,
        cand("candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"),
    )
    .await
    .unwrap();
    p.leave().await;
    let _ = client_pc.close().await;
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}

/// A publisher that re-offers at once (a second track right after the first answer) still
/// connects: the server must not take the re-offer for an ICE restart because its own ICE
/// start from the first offer has not run yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_reoffer_right_after_the_first_answer_still_connects() {
    let (sfu, metrics) = sfu().await;
    let (events_tx, mut events) = mpsc::channel(64);
    let p = sfu.join("reoffer", "pat", events_tx).await.unwrap();
    let mut client = RawClient::new(SettingEngine::default()).await;
    let mut declared = Vec::new();
    for (kind, source) in [
        (RTPCodecType::Audio, Source::Microphone),
        (RTPCodecType::Video, Source::Camera),
    ] {
        // A second offer right after the first answer: the race this test is about.
        client.publish(&p, kind, source, &mut declared).await;
    }
    client
        .connect(&p, &mut events)
        .await
        .expect("the publisher connection comes up after the re-offer");
    p.leave().await;
    let _ = client.pc.close().await;
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}

/// A bare webrtc-rs client (none of the headless participant's logic), ICE on loopback, with
/// its trickled candidates and connection state observable.
struct RawClient {
    pc: RTCPeerConnection,
    cands: mpsc::UnboundedReceiver<RTCIceCandidateInit>,
    state: watch::Receiver<RTCPeerConnectionState>,
}

impl RawClient {
    async fn new(mut settings: SettingEngine) -> Self {
        sfu_lite::sfu::transport::loopback_only(&mut settings, false);
        let (media, registry) = sfu_lite::sfu::transport::engine_and_interceptors().unwrap();
        let api = APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .build();
        let pc = api
            .new_peer_connection(RTCConfiguration::default())
            .await
            .unwrap();
        let (cand_tx, cands) = mpsc::unbounded_channel();
        pc.on_ice_candidate(Box::new(move |c: Option<RTCIceCandidate>| {
            if let Some(json) = c.and_then(|c| c.to_json().ok()) {
                let _ = cand_tx.send(json);
            }
            Box::pin(async {})
        }));
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        pc.on_peer_connection_state_change(Box::new(move |s| {
            state_tx.send_replace(s);
            Box::pin(async {})
        }));
        Self { pc, cands, state }
    }

    async fn add_sendonly(&self, kind: RTPCodecType) -> Arc<RTCRtpTransceiver> {
        self.pc
            .add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    send_encodings: vec![],
                }),
            )
            .await
            .unwrap()
    }

    /// Adds a send-only `kind` track declared as `source`, offers everything declared so far to
    /// `p`, and applies the answer.
    async fn publish(
        &self,
        p: &Participant,
        kind: RTPCodecType,
        source: Source,
        declared: &mut Vec<PublishedTrack>,
    ) {
        let t = self.add_sendonly(kind).await;
        let offer = self.pc.create_offer(None).await.unwrap();
        self.pc.set_local_description(offer).await.unwrap();
        declared.push(PublishedTrack {
            mid: t.mid().unwrap().to_string(),
            source,
        });
        let sdp = self.pc.local_description().await.unwrap().sdp;
        let answer = p.publish_offer(sdp, declared.clone()).await.unwrap();
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .unwrap();
    }

    /// Trickles candidates both ways with `p` until this client's connection is up (bounded by
    /// `WAIT`).
    async fn connect(
        &mut self,
        p: &Participant,
        events: &mut mpsc::Receiver<SfuEvent>,
    ) -> Result<(), tokio::time::error::Elapsed> {
        tokio::time::timeout(WAIT, async {
            loop {
                tokio::select! {
                    Some(c) = self.cands.recv() => {
                        let c = IceCandidateInit { username_fragment: None, ..c.into() };
                        p.add_candidate(PcKind::Publisher, Some(c)).await.unwrap();
                    }
                    Some(e) = events.recv() => match e {
                        SfuEvent::Candidate { pc: PcKind::Publisher, candidate } => {
                            self.pc.add_ice_candidate(candidate.into()).await.unwrap();
                        }
                        SfuEvent::Closed { reason } => panic!("media closed: {reason}"),
                        _ => {}
                    },
                    changed = self.state.changed() => {
                        changed.unwrap();
                        if *self.state.borrow() == RTCPeerConnectionState::Connected {
                            return;
                        }
                    }
                }
            }
        })
        .await
    }
}

/// The reason of the next `Closed` event (bounded by `WAIT`).
async fn closed_reason(events: &mut mpsc::Receiver<SfuEvent>) -> String {
    tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if let SfuEvent::Closed { reason } = e {
                return reason;
            }
        }
        panic!("event stream ended without Closed");
    })
    .await
    .expect("Closed within the wait bound")
}

/// A UDP socket whose sends can be switched off: a client whose network went away, as far as
/// the server can tell (no `tc`/netem needed).
struct Muteable {
    socket: tokio::net::UdpSocket,
    muted: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl Conn for Muteable {
    async fn connect(&self, addr: SocketAddr) -> webrtc::util::Result<()> {
        Ok(self.socket.connect(addr).await?)
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc::util::Result<usize> {
        Ok(self.socket.recv(buf).await?)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc::util::Result<(usize, SocketAddr)> {
        Ok(self.socket.recv_from(buf).await?)
    }
    async fn send(&self, buf: &[u8]) -> webrtc::util::Result<usize> {
        if self.muted.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        Ok(self.socket.send(buf).await?)
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc::util::Result<usize> {
        if self.muted.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        Ok(self.socket.send_to(buf, target).await?)
    }
    fn local_addr(&self) -> webrtc::util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }
    async fn close(&self) -> webrtc::util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_whose_media_goes_silent_is_removed_once_ice_fails() {
    let mut config = Config::embedded().media;
    // Above the 2 s keepalive interval, or a healthy idle link would flap to Disconnected.
    config.ice_disconnected_timeout_ms = 3000;
    config.ice_failed_timeout_ms = 1000;
    let (sfu, metrics) = sfu_with(config).await;
    let (events_tx, mut events) = mpsc::channel(64);
    let p = sfu.join("silence", "sam", events_tx).await.unwrap();

    let muted = Arc::new(AtomicBool::new(false));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mux = UDPMuxDefault::new(UDPMuxParams::new(Muteable {
        socket,
        muted: muted.clone(),
    }));
    let mut settings = SettingEngine::default();
    settings.set_udp_network(UDPNetwork::Muxed(mux));
    let mut client = RawClient::new(settings).await;
    let mut declared = Vec::new();
    client
        .publish(&p, RTPCodecType::Audio, Source::Microphone, &mut declared)
        .await;
    client
        .connect(&p, &mut events)
        .await
        .expect("the publisher connection comes up");
    assert_eq!(metrics.peer_connections.load(Ordering::Relaxed), 2);

    // The network goes away under the client: nothing more reaches the server.
    muted.store(true, Ordering::Relaxed);
    let reason = closed_reason(&mut events).await;
    assert!(reason.contains("ICE failed"), "{reason}");
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    p.leave().await;
    let _ = client.pc.close().await;
    sfu.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_is_delivered_even_when_the_events_channel_was_full() {
    let mut config = Config::embedded().media;
    config.connect_timeout_secs = 1;
    let (sfu, metrics) = sfu_with(config).await;
    let (events_tx, mut events) = mpsc::channel(1);
    let participant = sfu.join("full", "ghost", events_tx.clone()).await.unwrap();
    let (client_pc, offer) = silent_offer().await;
    participant.publish_offer(offer, vec![]).await.unwrap();
    // The relay is slow: the channel stays full while the participant fails.
    let filler = SfuEvent::Closed {
        reason: "filler".into(),
    };
    while events.try_recv().is_ok() {}
    events_tx.try_send(filler).expect("room for the filler");
    drop(events_tx);
    let deadline = tokio::time::Instant::now() + WAIT;
    while metrics.peer_connections.load(Ordering::Relaxed) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the participant was not failed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Now the relay drains: after the filler, the real Closed must still come.
    let mut reasons = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if let SfuEvent::Closed { reason } = e {
                reasons.push(reason);
                if reasons.len() == 2 {
                    break;
                }
            }
        }
    })
    .await;
    assert_eq!(reasons.len(), 2, "Closed was lost: {reasons:?}");
    assert!(reasons[1].contains("did not connect"), "{reasons:?}");
    participant.leave().await;
    let _ = client_pc.close().await;
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}
