//! Server shutdown: every client on both namespaces is told (`server_shutdown`), then
//! disconnected, and every gauge is back to zero when `shutdown` returns; while it waits for
//! clients to hang up, new sockets are refused.

mod common;

use std::sync::atomic::Ordering;

use common::{base_url, server, server_with, Client};

#[tokio::test]
async fn shutdown_tells_every_client_then_disconnects_and_gauges_return_to_zero() {
    let server = server().await;
    let (mut t1, _, _) = Client::tutorial(&server).await;
    let (mut t2, _, _) = Client::tutorial(&server).await;
    t1.expect("change").await;
    let mut r1 = Client::rooms(&server).await;
    r1.join("r", "A").await;
    let mut r2 = Client::rooms(&server).await;
    r2.join("r", "B").await;
    r1.expect("joined").await;
    let mut lobby = Client::rooms(&server).await;
    assert_eq!(server.metrics.sockets.load(Ordering::Relaxed), 5);
    assert_eq!(server.metrics.participants.load(Ordering::Relaxed), 2);

    let metrics = server.metrics.clone();
    server.shutdown().await;
    // Settled by the time shutdown returns: no polling needed.
    let nonzero: Vec<_> = metrics
        .gauges()
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .collect();
    assert!(nonzero.is_empty(), "gauges after shutdown: {nonzero:?}");

    for client in [&mut t1, &mut t2, &mut r1, &mut r2, &mut lobby] {
        // Whatever deltas were in flight, the last two things are the notice and the close.
        loop {
            let (event, args) = client.next().await;
            if event == "error" && args[0]["code"] == "server_shutdown" {
                break;
            }
            assert!(
                ["change", "left"].contains(&event.as_str()),
                "unexpected {event} {args:?}"
            );
        }
        loop {
            let (event, args) = client.next().await;
            if event == "close" {
                break;
            }
            assert!(
                ["change", "left"].contains(&event.as_str()),
                "unexpected {event} {args:?} after the notice"
            );
        }
    }
}

#[tokio::test]
async fn while_shutdown_waits_for_clients_new_sockets_are_refused() {
    // This Rust client does not hang up after the server's disconnect, so shutdown waits out
    // the grace period for it: the window in which a newcomer knocks.
    let server = server_with(|c| c.server.shutdown_grace_secs = 3).await;
    let url = base_url(&server);
    let mut stays = Client::rooms(&server).await;
    let shutdown = tokio::spawn(server.shutdown());
    stays.expect_error("server_shutdown").await;
    stays.expect("close").await;

    let mut late = Client::try_connect_url(url, "/rooms").await;
    let (event, args) = late.next().await;
    assert_eq!(event, "error", "{args:?}");
    assert!(args[0].to_string().contains("server_shutdown"), "{args:?}");
    tokio::time::timeout(std::time::Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown ends within its grace period")
        .unwrap();
}
