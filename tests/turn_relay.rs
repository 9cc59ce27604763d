//! The embedded TURN relay on the HTTP port: per-participant credentials from the join ack,
//! an allocation over TCP next to HTTP on the same port, permissions for the SFU only.

mod common;
mod turn_client;

use std::net::SocketAddr;

use common::{assert_gauges_zero, server_with, stop, Client};
use serde_json::Value;
use turn_client::{Refused, TurnTcp};

/// The embedded relay's entry of a join ack: its URL and credentials.
fn relay_entry(ack: &Value, http: SocketAddr) -> (String, String) {
    let want = format!("turn:{}:{}?transport=tcp", http.ip(), http.port());
    let entry = ack["ice_servers"]
        .as_array()
        .expect("ice_servers")
        .iter()
        .find(|s| s["urls"][0] == want.as_str())
        .unwrap_or_else(|| panic!("no {want} in {ack}"));
    (
        entry["username"].as_str().unwrap().into(),
        entry["credential"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn embedded_relay_allocates_on_the_http_port_and_relays_to_the_sfu_only() {
    let server = server_with(|c| c.turn.embedded = true).await;
    let http = server.local_addr;
    let media = server.sfu.udp_addr().expect("one media port");
    let client = Client::rooms(&server).await;
    let ack = client.join("relay", "Ada").await;
    let (username, password) = relay_entry(&ack, http);
    let id = ack["id"].as_str().unwrap();
    assert!(username.ends_with(&format!(":{id}")), "{username}");

    let mut turn = TurnTcp::connect(http).await;
    let relayed = turn
        .allocate(&username, &password)
        .await
        .expect("allocates");
    assert!(relayed.ip().is_loopback(), "{relayed}");
    assert_eq!(
        server
            .metrics
            .relay_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    let other_host = SocketAddr::new("127.0.0.2".parse().unwrap(), media.port());
    let other_port = SocketAddr::new(media.ip(), media.port().wrapping_add(1));
    assert_eq!(turn.create_permission(other_host).await, Err(Refused(403)));
    assert_eq!(turn.create_permission(other_port).await, Err(Refused(403)));
    turn.create_permission(media)
        .await
        .expect("the SFU is allowed");

    // HTTP still answers on the same port.
    let health = reqwest::get(format!("http://{http}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok\n");

    drop(turn);
    client.disconnect().await;
    assert_gauges_zero(&server.metrics).await;
    stop(server).await;
}

#[tokio::test]
async fn embedded_relay_refuses_wrong_or_expired_credentials() {
    let server = server_with(|c| c.turn.embedded = true).await;
    let http = server.local_addr;
    let client = Client::rooms(&server).await;
    let ack = client.join("relay", "Ada").await;
    let (username, password) = relay_entry(&ack, http);

    let mut wrong = TurnTcp::connect(http).await;
    let refused = wrong.allocate(&username, "not-the-password").await;
    assert!(matches!(refused, Err(Refused(400..=499))), "{refused:?}");

    // The same participant with an expiry in the past (the relay's secret is not ours to
    // know, so its password cannot be made here; the unit tests of `RestAuth` check that the
    // expiry alone refuses).
    let (_, who) = username.split_once(':').unwrap();
    let expired = format!("1000:{who}");
    let mut old = TurnTcp::connect(http).await;
    let refused = old.allocate(&expired, &password).await;
    assert!(matches!(refused, Err(Refused(400..=499))), "{refused:?}");

    drop((wrong, old));
    client.disconnect().await;
    assert_gauges_zero(&server.metrics).await;
    stop(server).await;
}

#[tokio::test]
async fn relay_is_off_by_default_and_the_ack_names_no_relay() {
    let server = server_with(|_| {}).await;
    let client = Client::rooms(&server).await;
    let ack = client.join("plain", "Ada").await;
    assert_eq!(ack["ice_servers"], serde_json::json!([]), "{ack}");
    client.disconnect().await;
    stop(server).await;
}

#[tokio::test]
async fn shutdown_ends_open_relay_connections() {
    let server = server_with(|c| c.turn.embedded = true).await;
    let http = server.local_addr;
    let client = Client::rooms(&server).await;
    let ack = client.join("relay", "Ada").await;
    let (username, password) = relay_entry(&ack, http);
    let mut turn = TurnTcp::connect(http).await;
    turn.allocate(&username, &password)
        .await
        .expect("allocates");
    // `stop` also waits for every gauge, `relay_connections` included, to return to zero.
    stop(server).await;
    assert!(turn.is_closed().await, "the relay closed its end");
}
