//! `sfu-lite load` end to end: the real binary drives headless peers against a server started
//! here, and its JSON report must describe what happened.

#[path = "../../tests/common/gauges.rs"]
mod gauges;

mod load_support;

use std::process::Command;

use load_support::{load, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_load_reports_every_peer_and_packet() {
    let server = server().await;
    let url = format!("http://127.0.0.1:{}", server.local_addr.port());
    let (status, r) = load(
        url,
        &[
            "--rooms",
            "1",
            "--peers",
            "3",
            "--duration",
            "3s",
            "--ramp",
            "0",
            "--audio",
            "--max-loss",
            "0.05",
        ],
    )
    .await;
    assert!(status.success(), "load failed: {status}\n{r:#}");
    assert_eq!(r["peers_joined"], 3);
    assert_eq!(r["peers_failed"], 0);
    // Each of 3 peers receives the video and audio of the 2 others.
    assert_eq!(r["subscriptions_expected"], 12, "{r:#}");
    assert_eq!(r["subscriptions_started"], 12, "{r:#}");
    assert!(r["recv_packets"].as_u64().unwrap() > 100, "{r:#}");
    assert!(r["loss_ratio"].as_f64().unwrap() <= 0.05);
    for key in ["latency_ms", "join_ms", "first_frame_ms"] {
        for p in ["p50", "p95", "p99", "max"] {
            assert!(r[key][p].is_number(), "{key}.{p} in {r:#}");
        }
    }
    assert!(
        r["latency_ms"]["count"].as_u64().unwrap() > 0,
        "no latency matched"
    );
    // Each of the 3 peers got a keyframe from each of the other 2 cameras.
    assert_eq!(
        r["first_frame_ms"]["count"], 6,
        "every subscription saw a keyframe"
    );
    // /metrics was reachable, so the server's side is filled in.
    assert!(r["server_forwarded_packets"].as_u64().unwrap() > 0, "{r:#}");
    assert!(r["server_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(r["tool_cpu_s"].as_f64().unwrap() > 0.0);
    // Teardown left nothing behind on the server (leaves finish asynchronously: bounded wait).
    gauges::assert_gauges_zero(&server.metrics).await;
    server.shutdown().await;
}

/// An nftables table that drops, on arrival, every RTP packet of payload type `pt` sent from
/// UDP port `sport`; removed when dropped. Needs root (the tests run as root in a loopback-only
/// network namespace, see COMMON.md / scripts/test.sh).
struct DropRtp {
    table: String,
}

impl DropRtp {
    fn new(sport: u16, pt: u8) -> Self {
        let table = format!("sfu_load_smoke_{sport}");
        // Bits from the UDP header's start: 64 is the first payload byte, its top two bits the
        // RTP version (2); 73 skips the marker bit to the 7-bit payload type. RTCP (200-206),
        // STUN and DTLS never have 111 there.
        let script = format!(
            "add table inet {table}\n\
             add chain inet {table} input {{ type filter hook input priority 0; }}\n\
             add rule inet {table} input udp sport {sport} @th,64,2 2 @th,73,7 {pt} drop\n"
        );
        let out = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(script.as_bytes())?;
                child.wait_with_output()
            })
            .expect("nft runs (installed, and the test runs as root)");
        assert!(
            out.status.success(),
            "nft refused the rule: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { table }
    }
}

impl Drop for DropRtp {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_never_starts_is_counted_as_lost_and_fails_the_run() {
    let server = server().await;
    let port = server.local_addr.port();
    // The media port is the HTTP port number (udp_port = 0): drop the server's Opus (PT 111)
    // on the way to every subscriber. Video still flows; every audio subscription stays silent.
    let opus_pt = sfu_lite::sfu::transport::codecs()
        .into_iter()
        .find(|(c, _)| c.capability.mime_type == "audio/opus")
        .map(|(c, _)| c.payload_type);
    assert_eq!(
        opus_pt,
        Some(111),
        "the rule below matches Opus by its payload type"
    );
    let _rule = DropRtp::new(port, 111);
    let url = format!("http://127.0.0.1:{port}");
    let (status, r) = load(
        url,
        &[
            "--rooms",
            "1",
            "--peers",
            "3",
            "--duration",
            "3s",
            "--ramp",
            "0",
            "--audio",
            // Loss alone must not fail the run: the silent subscriptions must.
            "--max-loss",
            "1",
        ],
    )
    .await;
    assert_eq!(r["peers_joined"], 3, "{r:#}");
    // 3 peers, each subscribed to the 2 tracks of each of the 2 others.
    assert_eq!(r["subscriptions_expected"], 12, "{r:#}");
    assert_eq!(r["subscriptions_started"], 6, "only video started: {r:#}");
    assert_eq!(
        status.code(),
        Some(1),
        "a silent subscription fails the run"
    );
    // The silent audio counts as lost: 6 streams of 50 packets/s against 6 of ~62 video.
    let loss = r["loss_ratio"].as_f64().unwrap();
    assert!(loss > 0.25, "silent subscriptions count as loss: {loss}");
    drop(_rule);
    gauges::assert_gauges_zero(&server.metrics).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_only_load_loses_no_message_and_survives_mass_disconnect() {
    let server = server().await;
    let url = format!("http://127.0.0.1:{}", server.local_addr.port());
    let (status, r) = load(
        url,
        &[
            "--signal-only",
            "--rooms",
            "2",
            "--peers",
            "10",
            "--duration",
            "1s",
            "--ramp",
            "0",
        ],
    )
    .await;
    assert!(status.success(), "load failed: {status}\n{r:#}");
    assert_eq!(r["peers_joined"], 10);
    assert_eq!(r["messages_lost"], 0);
    // 20 messages each, to the 4 others of a 5-member room.
    assert_eq!(r["message_latency_ms"]["count"], 10 * 20 * 4);
    assert_eq!(r["server_alive_after_mass_disconnect"], true);
    server.shutdown().await;
}

#[test]
fn remote_target_is_refused_without_allow_remote() {
    let out = Command::new(env!("CARGO_BIN_EXE_sfu-lite-load"))
        .args(["--url", "http://192.0.2.1:8000", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}
