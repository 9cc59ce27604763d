//! The media relay on `/rooms`: a real publisher offer (made by webrtc-rs) is answered with
//! `publish_answer`, and a member whose media never connects is removed from the room by the
//! SFU's `Closed` event: the others get `left`, the member gets `media_error`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{server_with, stop, Client};
use futures_util::FutureExt;
use rust_socketio::Payload;
use serde_json::{json, Value};
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::APIBuilder;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

/// A VP8 publisher offer. The local description is never set, so this peer gathers nothing
/// and never touches the network: the server's side can never connect.
async fn camera_offer() -> String {
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    let api = APIBuilder::new().with_media_engine(media).build();
    let pc = api
        .new_peer_connection(RTCConfiguration::default())
        .await
        .unwrap();
    let track = Arc::new(TrackLocalStaticSample::new(
        RTCRtpCodecCapability {
            mime_type: "video/VP8".into(),
            ..Default::default()
        },
        "camera".into(),
        "stream".into(),
    ));
    pc.add_track(track).await.unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.close().await.unwrap();
    offer.sdp
}

/// The next event that is not a server ICE candidate.
async fn next_but_candidates(c: &mut Client) -> (String, Vec<Value>) {
    loop {
        let (event, args) = c.next().await;
        if event != "candidate" {
            return (event, args);
        }
        assert!(["publisher", "subscriber"].contains(&args[0]["pc"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn a_publisher_offer_is_answered_and_a_never_connecting_member_is_removed() {
    let server = server_with(|c| c.media.connect_timeout_secs = 1).await;
    let mut a = Client::rooms(&server).await;
    let a_id = a.join("r", "A").await["id"].as_str().unwrap().to_string();
    let mut b = Client::rooms(&server).await;
    b.join("r", "B").await;
    a.expect("joined").await;

    let sdp = camera_offer().await;
    let ack = a
        .ack(
            "publish_offer",
            json!({"sdp": sdp, "tracks": [{"mid": "0", "source": "camera"}]}),
        )
        .await;
    assert_eq!(ack, json!({}), "publish_offer acknowledged");
    let (event, args) = next_but_candidates(&mut a).await;
    assert_eq!(event, "publish_answer", "{args:?}");
    assert!(args[0]["sdp"].as_str().unwrap().starts_with("v=0"));

    // Nothing connects: after connect_timeout_secs the SFU gives up on a's media.
    let (event, args) = next_but_candidates(&mut b).await;
    assert_eq!((event.as_str(), &args[0]), ("left", &json!({"id": a_id})));
    let (event, args) = next_but_candidates(&mut a).await;
    assert_eq!(event, "error", "{args:?}");
    assert_eq!(args[0]["code"], "media_error");
    assert_eq!(args[0]["event"], "media");

    // a is out of the room but still connected: it may join again.
    let ack = a.ack("message", json!({"content": "x"})).await;
    assert_eq!(ack["error"]["code"], "not_in_room");
    a.expect_error("not_in_room").await;
    let members = a.join("r", "A again").await["members"].clone();
    assert_eq!(members.as_array().unwrap().len(), 1);
    stop(server).await;
}

/// A publisher offer whose ICE can never start: its `ice-pwd` is empty, which webrtc-rs accepts in
/// the description but refuses when it starts the ICE agent. A re-offer after it waits inside
/// the SFU for ICE to start, up to `media.connect_timeout_secs`: a slow media call on demand.
fn offer_that_never_starts_ice(sdp: &str) -> String {
    sdp.lines()
        .map(|l| {
            if l.starts_with("a=ice-pwd:") {
                "a=ice-pwd:"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_state_and_leave_do_not_wait_for_a_slow_media_call() {
    // The SFU may wait 60 s on the re-offer below; every wait here is bounded by common::WAIT
    // (10 s). max_refused_events = 3: a strike for each refused media event would cut the
    // socket off.
    let server = server_with(|c| {
        c.media.connect_timeout_secs = 60;
        c.signaling.max_refused_events = 3;
    })
    .await;
    let mut a = Client::rooms(&server).await;
    a.join("r", "A").await;
    let mut b = Client::rooms(&server).await;
    b.join("r", "B").await;
    a.expect("joined").await;

    let sdp = offer_that_never_starts_ice(&camera_offer().await);
    let offer = json!({"sdp": sdp, "tracks": [{"mid": "0", "source": "camera"}]});
    assert_eq!(a.ack("publish_offer", offer.clone()).await, json!({}));
    let (event, _) = next_but_candidates(&mut a).await;
    assert_eq!(event, "publish_answer");
    // The re-offer: its ack would come only after the SFU's wait.
    let reoffer_answered = Arc::new(AtomicUsize::new(0));
    let answered = reoffer_answered.clone();
    a.sio
        .emit_with_ack(
            "publish_offer",
            Payload::Text(vec![offer]),
            Duration::from_secs(120),
            move |_, _| {
                answered.fetch_add(1, Ordering::SeqCst);
                async {}.boxed()
            },
        )
        .await
        .unwrap();

    // Chat and state are handled at once, not behind it (before this fix the session ran the
    // SFU call inline, so these acks waited for the re-offer's).
    assert_eq!(a.ack("message", json!({"content": "hi"})).await, json!({}));
    assert_eq!(
        a.ack("state", json!({"audio_muted": true})).await,
        json!({})
    );
    assert_eq!(next_but_candidates(&mut b).await.0, "message");
    assert_eq!(next_but_candidates(&mut b).await.0, "updated");
    assert_eq!(
        reoffer_answered.load(Ordering::SeqCst),
        0,
        "the re-offer is still in the SFU"
    );

    // Media events queue behind it, a bounded number; the rest are refused, without a strike.
    let end_of_candidates = json!({"pc": "publisher", "candidate": null});
    // Sent in bursts of 20, each followed by an acknowledged no-op, so the session's own queue
    // (64 events, where overflow does strike) is drained between bursts.
    for _ in 0..4 {
        for _ in 0..20 {
            a.emit("candidate", end_of_candidates.clone()).await;
        }
        assert_eq!(a.ack("state", json!({})).await, json!({}));
    }
    let busy = loop {
        let (event, args) = next_but_candidates(&mut a).await;
        if event == "error" {
            break args[0].clone();
        }
    };
    assert_eq!(busy["code"], "rate_limited", "{busy}");
    assert_eq!(busy["event"], "candidate");
    assert_eq!(
        a.ack("message", json!({"content": "still connected"}))
            .await,
        json!({})
    );

    // Leaving does not wait for the SFU either, and cleans everything up (checked by `stop`).
    assert_eq!(a.ack_args("leave", vec![]).await, json!({}));
    loop {
        let (event, _) = next_but_candidates(&mut b).await;
        if event == "left" {
            break;
        }
    }
    stop(server).await;
}
