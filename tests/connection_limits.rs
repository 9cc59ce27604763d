//! What one client may hold: Engine.IO sessions count against `server.max_connections` from
//! their handshake until they end, one address cannot take every slot or open sessions faster
//! than its rate, TCP connections are capped in all and per address, and a binary event cannot
//! park megabytes in the server. Raw HTTP and TCP, as an attacker would send them.

mod common;

use std::time::Duration;

use common::{assert_gauges_zero, server_with, stop, WAIT};
use sfu_lite::server::RunningServer;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn base(server: &RunningServer) -> String {
    format!("http://127.0.0.1:{}", server.local_addr.port())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

/// A bare Engine.IO polling handshake (protocol `eio`), optionally "from" `forwarded_for`.
async fn handshake(
    server: &RunningServer,
    eio: u8,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut req = http().get(format!(
        "{}/socket.io/?EIO={eio}&transport=polling",
        base(server)
    ));
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.expect("handshake answered")
}

/// The session id in a handshake answer (`0{"sid":"..."}`, length-prefixed under EIO3).
fn sid_of(body: &str) -> String {
    let start = body.find("\"sid\":\"").expect("sid in handshake") + 7;
    body[start..].split('"').next().unwrap().to_string()
}

async fn statuses(server: &RunningServer, n: usize, eio: u8, from: Option<&str>) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(handshake(server, eio, from).await.status().as_u16());
    }
    out
}

#[tokio::test]
async fn bare_handshakes_count_against_max_connections_until_the_connect_timeout() {
    let server = server_with(|c| {
        c.server.max_connections = 5;
        c.server.max_connections_per_address = 0;
        c.server.handshakes_per_address_per_second = 0;
        // Long enough for a dozen requests on a busy machine, short enough to wait out.
        c.server.connect_timeout_secs = 8;
    })
    .await;
    // Sessions that never join a namespace fill the server (its limit and the little room
    // kept so that joins over it are refused politely) ...
    let limit = server.admission.session_limit();
    assert!(limit < 5 * 4, "{limit}");
    let got = statuses(&server, limit + 1, 4, None).await;
    assert!(got[..limit].iter().all(|s| *s == 200), "{got:?}");
    assert_eq!(got[limit], 503, "{got:?}");
    assert_eq!(server.admission.sessions(), limit);
    // ... until the connect timeout closes them, seconds later.
    let deadline = tokio::time::Instant::now() + 2 * WAIT;
    while server.admission.sessions() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bare sessions never timed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(handshake(&server, 4, None).await.status(), 200);
    stop(server).await;
}

#[tokio::test]
async fn eio3_one_shot_handshakes_are_capped_per_address() {
    let server = server_with(|c| {
        c.server.max_connections_per_address = 5;
        c.server.handshakes_per_address_per_second = 0;
    })
    .await;
    // Each EIO3 handshake joins `/` at once; a sixth from the same address is refused.
    assert_eq!(
        statuses(&server, 6, 3, None).await,
        [200, 200, 200, 200, 200, 429]
    );
    assert!(
        server
            .metrics
            .sockets
            .load(std::sync::atomic::Ordering::Relaxed)
            <= 5
    );
    stop(server).await;
}

#[tokio::test]
async fn one_address_cannot_lock_out_another_behind_a_trusted_proxy() {
    let server = server_with(|c| {
        c.server.max_connections_per_address = 3;
        c.server.handshakes_per_address_per_second = 0;
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let attacker = Some("198.51.100.1");
    assert_eq!(
        statuses(&server, 5, 4, attacker).await,
        [200, 200, 200, 429, 429]
    );
    // Someone else, through the same proxy, still gets in and joins a namespace.
    let res = handshake(&server, 4, Some("198.51.100.2")).await;
    assert_eq!(res.status(), 200);
    let sid = sid_of(&res.text().await.unwrap());
    let url = format!(
        "{}/socket.io/?EIO=4&transport=polling&sid={sid}",
        base(&server)
    );
    let client = http();
    let posted = client.post(&url).body("40/rooms,").send().await.unwrap();
    assert_eq!(posted.status(), 200);
    let answer = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(connected(&answer), "{answer}");
    stop(server).await;
}

#[tokio::test]
async fn a_forwarded_header_from_an_untrusted_peer_is_ignored() {
    let server = server_with(|c| {
        c.server.max_connections_per_address = 3;
        c.server.handshakes_per_address_per_second = 0;
    })
    .await;
    let mut got = Vec::new();
    for i in 0..4 {
        let forged = format!("203.0.113.{i}");
        got.push(handshake(&server, 4, Some(&forged)).await.status().as_u16());
    }
    assert_eq!(
        got,
        [200, 200, 200, 429],
        "all from 127.0.0.1 whatever the header says"
    );
    stop(server).await;
}

#[tokio::test]
async fn handshakes_faster_than_the_address_rate_are_refused() {
    let (rate, burst) = (1, 3);
    let server = server_with(|c| {
        c.server.handshakes_per_address_per_second = rate;
        c.server.handshake_burst = burst;
    })
    .await;
    let started = std::time::Instant::now();
    let mut accepted = 0;
    let mut refused = None;
    for _ in 0..burst + 10 {
        let res = handshake(&server, 4, None).await;
        match res.status().as_u16() {
            200 => accepted += 1,
            429 => refused = Some(res),
            other => panic!("unexpected status {other}"),
        }
    }
    let allowed = burst as f64 + started.elapsed().as_secs_f64() * rate as f64;
    assert!(
        accepted as f64 <= allowed + 1.0,
        "{accepted} accepted, allowed {allowed}"
    );
    let refused = refused.expect("some handshakes refused");
    assert_eq!(refused.headers()["retry-after"], "1");
    stop(server).await;
}

/// Opens a raw TCP connection and tells whether the server closes it within `within`.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, conn.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn tcp_connections_beyond_the_per_address_cap_are_closed_at_once() {
    let server = server_with(|c| c.server.max_connections_per_address = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.local_addr).await.unwrap());
    }
    let mut fourth = TcpStream::connect(server.local_addr).await.unwrap();
    assert!(
        closed_within(&mut fourth, WAIT).await,
        "fourth connection kept open"
    );
    for conn in &mut held {
        assert!(!closed_within(conn, Duration::from_millis(200)).await);
    }
    drop(held);
    // Slots come back with the connections.
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.admission.tcp_connections() > 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = http()
        .get(format!("{}/healthz", base(&server)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    stop(server).await;
}

#[tokio::test]
async fn tcp_connections_beyond_the_total_cap_are_closed_at_once() {
    let server = server_with(|c| {
        c.server.max_tcp_connections = 2;
        c.server.max_connections_per_address = 0;
    })
    .await;
    let _a = TcpStream::connect(server.local_addr).await.unwrap();
    let _b = TcpStream::connect(server.local_addr).await.unwrap();
    let mut third = TcpStream::connect(server.local_addr).await.unwrap();
    assert!(
        closed_within(&mut third, WAIT).await,
        "third connection kept open"
    );
    assert_eq!(server.admission.tcp_limit(), 2);
    stop(server).await;
}

/// Whether a poll's packets (the first ping may come along) include the `/rooms` connect.
fn connected(poll: &str) -> bool {
    poll.split('\u{1e}')
        .any(|p| p.starts_with("40/rooms,{\"sid\""))
}

/// A polling session joined to `/rooms`; returns its polling URL.
async fn rooms_session(server: &RunningServer) -> String {
    let res = handshake(server, 4, None).await;
    let sid = sid_of(&res.text().await.unwrap());
    let url = format!(
        "{}/socket.io/?EIO=4&transport=polling&sid={sid}",
        base(server)
    );
    http().post(&url).body("40/rooms,").send().await.unwrap();
    let answer = http().get(&url).send().await.unwrap().text().await.unwrap();
    assert!(connected(&answer), "{answer}");
    url
}

/// Whether the session behind `url` is closed: its next poll says so at once (the close packet
/// or an unknown session) instead of waiting for something to send.
async fn session_closed(url: &str) -> bool {
    match http().get(url).send().await {
        Ok(res) if res.status() == 400 => true,
        Ok(res) => res.text().await.unwrap().split('\u{1e}').any(|p| p == "1"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_binary_event_declaring_many_attachments_closes_the_connection() {
    let server = server_with(|_| {}).await;
    let url = rooms_session(&server).await;
    let header = r#"451000-/rooms,["message",{"_placeholder":true,"num":0}]"#;
    http().post(&url).body(header).send().await.unwrap();
    assert!(
        session_closed(&url).await,
        "a 1000-attachment event was buffered"
    );
    assert_gauges_zero(&server.metrics).await;
    stop(server).await;
}

#[tokio::test]
async fn a_binary_attachment_over_the_cap_closes_the_connection() {
    let server = server_with(|_| {}).await;
    let url = rooms_session(&server).await;
    // 2,049 zero bytes in base64: past the 1 KiB an attachment may have.
    let body = format!(
        "{}\u{1e}b{}",
        r#"451-/rooms,["message",{"_placeholder":true,"num":0}]"#,
        "A".repeat(2732)
    );
    http().post(&url).body(body).send().await.unwrap();
    assert!(
        session_closed(&url).await,
        "a 2 KiB attachment was buffered"
    );
    stop(server).await;
}
