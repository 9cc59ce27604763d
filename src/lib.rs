//! sfu-lite: video meetings in the browser on a server you run yourself.
//!
//! # Layout
//! - [`config`]: the embedded default config, file and environment layers.
//! - [`server`]: start-up and ordered shutdown of everything below; [`conntrack`] counts
//!   open client connections so shutdown can wait for clients to hang up, and holds them to
//!   their idle, header and write deadlines; [`admission`] caps connections and sessions in
//!   all and per client address.
//! - [`access`]: who may enter a room and with which role (policies, tokens, passwords);
//!   [`admin`]: the admin API `/api/v1`.
//! - [`http`]: routes only — the web client, `/healthz`, `/metrics`, the Socket.IO layer.
//! - [`signal`]: Socket.IO. The tutorial's protocol on `/`, rooms and media negotiation on
//!   `/rooms`; validation, limits and the one error shape. Knows nothing of RTP.
//! - [`sfu`]: WebRTC. Two PeerConnections per participant (publisher: client offers;
//!   subscriber: server offers), one reader per published track, one writer task per
//!   subscription. Knows nothing of Socket.IO.
//! - [`logging`]: `RUST_LOG` or a default, minus webrtc-rs's expected warnings.
//! - [`metrics`]: counters and gauges behind `/metrics`; [`procstat`]: CPU and RSS from `/proc`.
//! - [`clock`]: the clock the limits read (real, or advanced by tests).
//! - [`sync`]: the one `Mutex` lock helper.
//! - [`turn`]: TURN for clients whose UDP is blocked: per-participant credentials for an
//!   external TURN server, and the embedded relay (TURN/TCP on the HTTP port, to the SFU only).
//! - The headless participant that the media tests drive and the load tester (`sfu-lite
//!   load`) are the `sfu-lite-tools` package in `tools/`, outside the server's dependencies.
//!
//! # How things travel
//! A signaling event arrives as Socket.IO JSON, is decoded into a typed message in `signal`,
//! checked against the limits, and either answered there (rooms, chat) or handed to the SFU
//! through [`sfu::Participant`] (offers, answers, candidates). The SFU answers through an
//! [`sfu::SfuEvent`] channel that `signal` relays to that socket.
//!
//! A media packet arrives on the one UDP socket, is decrypted by the publisher's
//! PeerConnection, read once by its track's reader task, and handed by bounded channel to one
//! writer task per subscriber, which writes it to that subscriber's local track (re-encrypted
//! per subscriber). A full channel drops for that subscriber only: one packet of audio, or
//! video up to the next keyframe, which the publisher is then asked for.

pub mod access;
pub mod admin;
pub mod admission;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conntrack;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod procstat;
pub mod server;
pub mod sfu;
pub mod signal;
pub mod sync;
pub mod turn;
