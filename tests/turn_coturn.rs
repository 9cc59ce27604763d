//! Credentials for an external TURN server, checked by the real thing: Debian's coturn with
//! `use-auth-secret`, started here on loopback. Fresh credentials from a join ack allocate a
//! relay over TCP; the same participant's credentials with a past expiry get 401.

mod common;
mod turn_client;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::{server_with, stop, Client, WAIT};
use sfu_lite::turn::credentials;
use turn_client::{Refused, TurnTcp};

const SECRET: &str = "coturn-test-secret";

/// A coturn on loopback, killed when dropped.
pub struct Coturn {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

/// Starts `turnserver` with the REST-secret scheme on a free loopback port and waits until it
/// accepts TCP.
pub async fn coturn() -> Coturn {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let child = tokio::process::Command::new("turnserver")
        .args([
            "-n", // no config file: everything is on this command line
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            "--use-auth-secret",
            &format!("--static-auth-secret={SECRET}"),
            "--realm=sfu-lite.test",
            // coturn refuses loopback peers unless told; the SFU is one here.
            "--allow-loopback-peers",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            &format!("--userdb={}", path("turndb")),
            &format!("--pidfile={}", path("pid")),
            "--log-file=stdout",
            "--simple-log",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnserver (Debian package coturn) is installed: scripts/test.sh installs it");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // coturn says nothing machine-readable when it is ready: try its port, within a bound.
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "coturn did not listen on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Coturn {
        _child: child,
        _dir: dir,
        addr,
    }
}

#[tokio::test]
async fn coturn_accepts_join_ack_credentials_and_refuses_expired_ones() {
    let turn = coturn().await;
    let url = format!("turn:{}?transport=tcp", turn.addr);
    let server = server_with(|c| {
        c.turn.urls = vec![url.clone()];
        c.turn.secret = sfu_lite::config::Secret(SECRET.into());
        c.turn.ttl_secs = 600;
    })
    .await;
    let media = server.sfu.udp_addr().unwrap();
    let client = Client::rooms(&server).await;
    let ack = client.join("coturn", "Ada").await;
    let id = ack["id"].as_str().unwrap().to_string();
    let entry = &ack["ice_servers"][0];
    assert_eq!(entry["urls"], serde_json::json!([url]), "{ack}");
    let username = entry["username"].as_str().unwrap();
    let password = entry["credential"].as_str().unwrap();
    let expiry: u64 = username.split_once(':').unwrap().0.parse().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 590..=now + 610).contains(&expiry), "{username}");
    assert_eq!(username, format!("{expiry}:{id}"));

    let mut fresh = TurnTcp::connect(turn.addr).await;
    let relayed = fresh
        .allocate(username, password)
        .await
        .expect("coturn allocates");
    assert!(relayed.ip().is_loopback(), "{relayed}");
    fresh
        .create_permission(media)
        .await
        .expect("coturn lets the relay reach the SFU");

    // Made the same way, with the same secret, but expired an hour ago.
    let hour = Duration::from_secs(3600);
    let old = credentials::issue(SECRET.as_bytes(), &id, SystemTime::now() - 2 * hour, hour);
    let mut expired = TurnTcp::connect(turn.addr).await;
    assert_eq!(
        expired.allocate(&old.username, &old.password).await,
        Err(Refused(401))
    );

    client.disconnect().await;
    stop(server).await;
}
