//! Media transport: the webrtc-rs `API` every server-side PeerConnection is made from.
//!
//! Codecs (Opus; VP8, VP9, H.264 constrained baseline), the interceptors (our NACK generator
//! and responder from `nack.rs` with their settings, sender/receiver reports, our TWCC receiver
//! from `twcc.rs`)
//! and the network settings: ICE-lite, one muxed UDP port (or a socket per connection from a port range), both through `udp`'s
//! loss-tolerant socket, NAT 1:1 addresses, an IP filter, and loopback-only media when the
//! HTTP listener is a loopback address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use webrtc::api::interceptor_registry::configure_nack;
use webrtc::api::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MIME_TYPE_VP9,
};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice::udp_mux::{UDPMuxDefault, UDPMuxParams};
use webrtc::ice::udp_network::UDPNetwork;
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RTPCodecType,
};
use webrtc::rtp_transceiver::RTCPFeedback;

use super::nack;
use super::recovery::NackPolicy;
use super::sender_reports;
use super::twcc;
use super::udp::{LossySocket, RestartSafeMux, SocketPerConnection};
use super::SfuError;
use crate::config::MediaConfig;
use crate::metrics::Metrics;

/// The codecs sfu-lite forwards, with their payload types. Shared with the headless client so
/// both ends agree. NACK, PLI and transport-cc feedback are added by the interceptor helpers.
pub fn codecs() -> Vec<(RTCRtpCodecParameters, RTPCodecType)> {
    let fir = || RTCPFeedback {
        typ: "ccm".into(),
        parameter: "fir".into(),
    };
    let codec =
        |mime: &str, clock_rate, channels, fmtp: &str, pt, video: bool| RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: mime.into(),
                clock_rate,
                channels,
                sdp_fmtp_line: fmtp.into(),
                rtcp_feedback: if video { vec![fir()] } else { vec![] },
            },
            payload_type: pt,
            ..Default::default()
        };
    vec![
        (
            codec(
                MIME_TYPE_OPUS,
                48000,
                2,
                "minptime=10;useinbandfec=1",
                111,
                false,
            ),
            RTPCodecType::Audio,
        ),
        (
            codec(MIME_TYPE_VP8, 90000, 0, "", 96, true),
            RTPCodecType::Video,
        ),
        (
            codec(MIME_TYPE_VP9, 90000, 0, "profile-id=0", 98, true),
            RTPCodecType::Video,
        ),
        (
            codec(
                MIME_TYPE_H264,
                90000,
                0,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
                102,
                true,
            ),
            RTPCodecType::Video,
        ),
    ]
}

/// Registers [`codecs`] on a media engine, with the header extensions simulcast and the
/// active-speaker detection need: `sdes:mid`, `sdes:rtp-stream-id` and
/// `sdes:repaired-rtp-stream-id` on video (webrtc-rs tells a simulcast layer by its rid), the
/// RFC 6464 audio level on audio, `abs-send-time` on both; and `goog-remb` on video, so a browser that receives from us
/// reports its own estimate (REMB) where it does not use transport-wide feedback.
pub fn register_codecs(media: &mut MediaEngine) -> webrtc::error::Result<()> {
    register_codecs_for(media, Streams::Simulcast)
}

/// Which incoming streams a connection must tell apart by header extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streams {
    /// Simulcast may arrive: `sdes:mid` / rid extensions are negotiated (the server, and a
    /// client's publishing connection).
    Simulcast,
    /// Every incoming SSRC is declared in the SDP (a client receiving from the server): no
    /// `sdes` extensions. With them, webrtc-rs treats a packet that beats the start of its
    /// declared receiver as a simulcast probe, reads it and its successors looking for a rid,
    /// and on failure drops the SSRC for good ("incoming SSRC failed Simulcast probing": a
    /// subscription that never starts, seen in `media_lossy_sends`). Without them it gives
    /// up on that packet only and the declared receiver takes the stream.
    Declared,
}

fn register_codecs_for(media: &mut MediaEngine, streams: Streams) -> webrtc::error::Result<()> {
    for (c, kind) in codecs() {
        media.register_codec(c, kind)?;
    }
    let sdes: &[&str] = match streams {
        Streams::Simulcast => &[
            "urn:ietf:params:rtp-hdrext:sdes:mid",
            "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        ],
        Streams::Declared => &[],
    };
    for uri in sdes {
        media.register_header_extension(
            RTCRtpHeaderExtensionCapability { uri: (*uri).into() },
            RTPCodecType::Video,
            None,
        )?;
    }
    media.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: super::publish::AUDIO_LEVEL_URI.into(),
        },
        RTPCodecType::Audio,
        None,
    )?;
    // Our send time on every forwarded packet (`down.rs`): what a browser's receive-side
    // estimator needs for the REMB it sends us (see `down::send_time`).
    for kind in [RTPCodecType::Video, RTPCodecType::Audio] {
        media.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: webrtc::sdp::extmap::ABS_SEND_TIME_URI.into(),
            },
            kind,
            None,
        )?;
    }
    media.register_feedback(
        RTCPFeedback {
            typ: "goog-remb".into(),
            parameter: String::new(),
        },
        RTPCodecType::Video,
    );
    Ok(())
}

/// The capability of one of [`codecs`] by MIME type (case-insensitive).
pub fn codec_capability(mime: &str) -> Option<RTCRtpCodecCapability> {
    codecs()
        .into_iter()
        .map(|(c, _)| c.capability)
        .find(|c| c.mime_type.eq_ignore_ascii_case(mime))
}

/// What each outgoing stream keeps for answering NACKs: the packets of the last 2 s, at most
/// 512 (~2 s at 2.5 Mbit/s), in a ring that grows with the stream's rate (`recovery::History`).
/// Past 2 s a retransmission is useless: our own generator gives up after ~270 ms, a browser's
/// jitter buffer has moved on, and mediasoup keeps 2 s of video for the same reason. The
/// payloads are shared with the other subscribers of the same track (`Bytes`) and headers are
/// kept marshalled inline (`kept.rs`), so a 500 kbit/s down track costs 128 slots of ~88 bytes
/// and whatever payloads of its last 2 s only it still holds. A fixed 512 slots (10 s at that
/// rate) cost a 16-person meeting 0.96 MiB per participant; webrtc-rs's default of 8,192 held
/// over 200 MiB, ~15 MiB per participant, for history no NACK ever reaches.
const NACK_HISTORY: usize = 512;
const NACK_HISTORY_AGE: Duration = Duration::from_secs(2);

/// When a receiver (the server for its publishers' hops, a headless client for its own)
/// NACKs a hole, how often and until when (`recovery::NackPolicy`; docs/sfu.md "Loss
/// recovery"). Measured at 5 % loss per hop, 4 peers (docs/benchmarks.md, loss-5).
const NACK_POLICY: NackPolicy = NackPolicy {
    // Packets overtaken on the way arrive within a few ms; a hole older than this is loss.
    first_after: Duration::from_millis(10),
    // Longer than most round trips (so an answered NACK is rarely repeated) and short enough
    // that a lost NACK or retransmission is retried within a jitter buffer's patience.
    retry_after: Duration::from_millis(50),
    // Six tries: at 5 % loss each way a try fails ~10 % of the time, six in a row one packet
    // in 10^6. Past ~270 ms the packet is late for playout anyway: give up, ask for a keyframe.
    max_tries: 6,
    // Holes tracked per stream (~0.5 s of 2.5 Mbit/s video); more at once is an outage, which
    // a keyframe repairs faster than NACKs.
    max_missing: 128,
};
/// How often due NACKs are looked for while a hole is open (no timer runs otherwise).
const NACK_TICK: Duration = Duration::from_millis(5);
/// At most one give-up PLI per stream per this (the forwarder's throttle has the same 500 ms,
/// Galène's figure).
const NACK_PLI_INTERVAL: Duration = Duration::from_millis(500);

/// A media engine with our codecs and our interceptors, uncounted: for tests that build a
/// bare peer. See [`engine_with`].
pub fn engine_and_interceptors() -> webrtc::error::Result<(MediaEngine, Registry)> {
    engine_with(Registry::new(), &Metrics::new(), Streams::Simulcast)
}

/// A media engine with our codecs, and `inner` (interceptors that must see packets first,
/// such as a test's loss) followed by ours: NACK responder and generator (`nack.rs`, counted
/// in `metrics`), receiver reports, sender reports (`sender_reports.rs`), TWCC receiver (`twcc.rs`). The one place both the server and
/// the headless client get their interceptors. The TWCC *sender* is not added: with it on the
/// server's subscriber connections a webrtc-rs receiver never fired `on_track` for audio
/// (measured, `media_forwarding`); the downlink estimate reads the receivers' RTCP receiver
/// reports instead (`down.rs`).
pub fn engine_with(
    inner: Registry,
    metrics: &Arc<Metrics>,
    streams: Streams,
) -> webrtc::error::Result<(MediaEngine, Registry)> {
    let mut media = MediaEngine::default();
    register_codecs_for(&mut media, streams)?;
    // configure_nack registers the nack / nack pli feedback on the media engine; its registry
    // (webrtc-rs's own responder and generator) is dropped: ours replace them.
    let _ = configure_nack(Registry::new(), &mut media);
    let mut registry = inner;
    registry.add(Box::new(nack::ResponderBuilder {
        history: NACK_HISTORY,
        history_age: NACK_HISTORY_AGE,
        metrics: metrics.clone(),
    }));
    registry.add(Box::new(nack::GeneratorBuilder {
        policy: NACK_POLICY,
        tick: NACK_TICK,
        pli_interval: NACK_PLI_INTERVAL,
        metrics: metrics.clone(),
    }));
    // Receiver reports from webrtc-rs; sender reports our own (`sender_reports.rs`), in the
    // place webrtc-rs's `configure_rtcp_reports` puts them.
    registry.add(Box::new(
        webrtc::interceptor::report::receiver::ReceiverReport::builder(),
    ));
    registry.add(Box::new(sender_reports::ReporterBuilder {
        interval: SENDER_REPORT_INTERVAL,
    }));
    for kind in [RTPCodecType::Video, RTPCodecType::Audio] {
        media.register_feedback(
            RTCPFeedback {
                typ: "transport-cc".into(),
                parameter: String::new(),
            },
            kind,
        );
        media.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: webrtc::sdp::extmap::TRANSPORT_CC_URI.to_owned(),
            },
            kind,
            None,
        )?;
    }
    registry.add(Box::new(twcc::ReceiverBuilder {
        interval: TWCC_INTERVAL,
    }));
    Ok((media, registry))
}

/// How often an active sender reports (webrtc-rs's interval; RFC 3550's minimum is 5 s, and
/// browsers report about once a second for video).
const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How often transport-wide feedback goes to a sender while its packets arrive: webrtc-rs's and
/// Chromium's interval.
const TWCC_INTERVAL: Duration = Duration::from_millis(100);

/// SRTP's replay window, in packets, on every connection: a retransmission arrives up to the
/// generator's give-up time (~270 ms) after the newer packets, and webrtc-rs's default window
/// of 64 packets refuses it as a replay above ~240 packets/s (2.5 Mbit/s video). 1,024 covers
/// ~10 Mbit/s; the window is a bitmap, 128 bytes per stream.
const SRTP_REPLAY_WINDOW: usize = 1024;

/// The settings loss recovery needs on every connection, server and headless client.
pub fn recovery_settings(settings: &mut SettingEngine) {
    settings.set_srtp_replay_protection_window(SRTP_REPLAY_WINDOW);
}

/// Restricts ICE to loopback: loopback candidate on, filter to loopback, no mDNS, IPv4 or IPv6
/// to match the address in use. What every test and local development run uses.
pub fn loopback_only(settings: &mut SettingEngine, ipv6: bool) {
    settings.set_include_loopback_candidate(true);
    settings.set_ip_filter(Box::new(|ip: IpAddr| ip.is_loopback()));
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    settings.set_network_types(vec![if ipv6 {
        NetworkType::Udp6
    } else {
        NetworkType::Udp4
    }]);
}

/// How the server's PeerConnections get their UDP socket.
enum Network {
    /// One muxed port for every connection: one `API` for all.
    Muxed { api: API, mux: Arc<UDPMuxDefault> },
    /// A socket per connection from a port range: one `API` per connection, since the socket
    /// is part of its setting engine.
    PerConnection { ip: IpAddr, ports: (u16, u16) },
}

/// The server's WebRTC factory and what it was built with.
pub(crate) struct Transport {
    rtc_config: RTCConfiguration,
    config: MediaConfig,
    listen_ip: IpAddr,
    metrics: Arc<Metrics>,
    network: Network,
    /// The bound media address when muxed, for logs and tests.
    pub udp_addr: Option<SocketAddr>,
}

impl Transport {
    pub async fn new(
        config: &MediaConfig,
        http_listen: SocketAddr,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SfuError> {
        let internal = |e: &dyn std::fmt::Display| SfuError::Internal(e.to_string());
        let listen_ip = http_listen.ip();
        let mut udp_addr = None;
        let network = match config.port_range().map_err(|e| internal(&e))? {
            Some(ports) => Network::PerConnection {
                ip: listen_ip,
                ports,
            },
            None => {
                let port = config.effective_udp_port(http_listen.port());
                let bind = SocketAddr::new(listen_ip, port);
                let socket = tokio::net::UdpSocket::bind(bind).await.map_err(|e| {
                    SfuError::Internal(format!("cannot bind media UDP {bind}: {e}"))
                })?;
                udp_addr = socket.local_addr().ok();
                let mux = UDPMuxDefault::new(UDPMuxParams::new(LossySocket::new(
                    socket,
                    metrics.clone(),
                )));
                let network = UDPNetwork::Muxed(RestartSafeMux::new(mux.clone()));
                let api =
                    build_api(config, listen_ip, network, &metrics).map_err(|e| internal(&e))?;
                Network::Muxed { api, mux }
            }
        };
        // ICE-lite (see `settings`): the server gathers host candidates only and never uses
        // STUN/TURN servers itself; `ice_servers` are handed to clients.
        let rtc_config = RTCConfiguration::default();
        tracing::info!(?udp_addr, "media transport ready");
        Ok(Self {
            rtc_config,
            config: config.clone(),
            listen_ip,
            metrics,
            network,
            udp_addr,
        })
    }

    /// A new server-side PeerConnection on this transport's UDP network.
    pub async fn new_peer_connection(&self) -> webrtc::error::Result<RTCPeerConnection> {
        let config = self.rtc_config.clone();
        match &self.network {
            Network::Muxed { api, .. } => api.new_peer_connection(config).await,
            Network::PerConnection { ip, ports } => {
                let socket = SocketPerConnection::new(*ip, Some(*ports), self.metrics.clone());
                build_api(
                    &self.config,
                    self.listen_ip,
                    UDPNetwork::Muxed(socket),
                    &self.metrics,
                )?
                .new_peer_connection(config)
                .await
            }
        }
    }

    /// Closes the shared media socket, if there is one (shutdown; per-connection sockets close
    /// with their connections).
    pub async fn close(&self) {
        if let Network::Muxed { mux, .. } = &self.network {
            use webrtc::ice::udp_mux::UDPMux;
            let _ = mux.close().await;
        }
    }
}

/// An `API` with our codecs, interceptors and [`settings`] on `udp`.
fn build_api(
    config: &MediaConfig,
    listen_ip: IpAddr,
    udp: UDPNetwork,
    metrics: &Arc<Metrics>,
) -> webrtc::error::Result<API> {
    let (media, registry) = engine_with(Registry::new(), metrics, Streams::Simulcast)?;
    let mut settings = settings(config, listen_ip);
    settings.set_udp_network(udp);
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build())
}

/// The server's ICE settings: ICE-lite, timeouts, address filters, NAT 1:1.
fn settings(config: &MediaConfig, listen_ip: IpAddr) -> SettingEngine {
    let mut settings = SettingEngine::default();
    recovery_settings(&mut settings);
    // Nothing here calls `get_stats`; the stats interceptor would still cost a timestamp and a
    // channel send per packet per connection (vendor/webrtc/PATCHES.md, patch 4).
    settings.disable_stats_interceptor(true);
    // ICE-lite, as mediasoup and Janus: the server answers checks and never starts them, so
    // a client that names a hundred candidates cannot make it send checks to a hundred
    // addresses (a full agent sends ~8 to each). Clients are full agents and take the
    // controlling role on both connections (RFC 8445 §6.1.1; webrtc-rs, Chromium and
    // Firefox all do), even on the subscriber connection where the server offers.
    settings.set_lite(true);
    // The server never needs mDNS: it announces IP candidates only.
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    // How soon a participant whose media went silent is noticed (Disconnected), which starts
    // ICE restarts and the removal timer (`Peer::recover`, `ice_failed_timeout_ms`); the
    // agent's own Failed comes no sooner than that timer. Keepalives stay at webrtc-rs's default.
    settings.set_ice_timeouts(
        Some(Duration::from_millis(config.ice_disconnected_timeout_ms)),
        Some(Duration::from_millis(config.ice_failed_timeout_ms)),
        None,
    );
    if listen_ip.is_loopback() && config.ips.is_empty() {
        loopback_only(&mut settings, listen_ip.is_ipv6());
    } else if !config.ips.is_empty() {
        let allowed = config.ips.clone();
        settings.set_include_loopback_candidate(allowed.iter().any(|ip| ip.is_loopback()));
        settings.set_ip_filter(Box::new(move |ip: IpAddr| allowed.contains(&ip)));
    }
    if !config.public_ips.is_empty() {
        let ips = config.public_ips.iter().map(|ip| ip.to_string()).collect();
        settings.set_nat_1to1_ips(ips, RTCIceCandidateType::Host);
    }
    settings
}
