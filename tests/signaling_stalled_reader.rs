//! A `/rooms` member whose TCP stops reading (its receive window goes to zero while the room
//! chats) is removed within the heartbeat's bound: the others get `left`, a newcomer does not
//! see it, and every gauge returns to zero. Without a write deadline, engineioxide's close waits
//! forever on the blocked writer and the member stays.

mod common;

use std::time::Duration;

use common::{stop, Client, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

const PING_INTERVAL: u64 = 1;
const PING_TIMEOUT: u64 = 2;

/// A raw Engine.IO v4 WebSocket client with a tiny receive buffer, joined to room `r` on
/// `/rooms`; returns the stream (which the caller then stops reading) and its member id.
type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn stuck_member(addr: std::net::SocketAddr) -> (Ws, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("0{"));
    ws.send(Message::text("40/rooms,")).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("40/rooms,"));
    let join = json!(["join", {"room": "r", "name": "Stuck"}]);
    ws.send(Message::text(format!("42/rooms,1{join}")))
        .await
        .unwrap();
    let ack = next_text(&mut ws).await;
    let body = ack.strip_prefix("43/rooms,1").expect("join ack");
    let ack: Value = serde_json::from_str(body).unwrap();
    let id = ack[0]["id"].as_str().expect("member id").to_string();
    (ws, id)
}

/// The next text frame that is not a ping (pings are answered while the client still reads).
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("stream open")
            .expect("frame");
        if let Message::Text(text) = msg {
            let text = text.to_string();
            if text != "2" {
                return text;
            }
            ws.send(Message::text("3")).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_member_that_stops_reading_is_removed_and_the_room_hears_it_left() {
    let server = common::server_with(|c| {
        c.server.ping_interval_secs = PING_INTERVAL;
        c.server.ping_timeout_secs = PING_TIMEOUT;
    })
    .await;
    let mut talker = Client::rooms(&server).await;
    talker.join("r", "Talker").await;
    let (stuck, stuck_id) = stuck_member(server.local_addr).await;
    let joined = talker.expect("joined").await;
    assert_eq!(joined[0]["id"], stuck_id.as_str());

    // From here `stuck` is never polled: its kernel buffer fills, then the server's.
    let sio = talker.sio.clone();
    let chat = tokio::spawn(async move {
        let line = json!({"content": "x".repeat(60_000)});
        loop {
            if sio.emit("message", line.clone()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    let bound = Duration::from_secs(PING_INTERVAL + PING_TIMEOUT) + WAIT;
    let left = tokio::time::timeout(bound, async {
        loop {
            let (event, args) = talker.next().await;
            if event == "left" {
                return args;
            }
        }
    })
    .await
    .expect("the stalled member was never removed");
    assert_eq!(left[0]["id"], stuck_id.as_str());
    chat.abort();

    let newcomer = Client::rooms(&server).await;
    let ack = newcomer.join("r", "New").await;
    let members: Vec<&Value> = ack["members"].as_array().unwrap().iter().collect();
    assert!(
        members.iter().all(|m| m["id"] != stuck_id.as_str()),
        "{members:?}"
    );
    drop(stuck);
    talker.disconnect().await;
    newcomer.disconnect().await;
    stop(server).await;
}
