//! The media relay on `/rooms`: a real publisher offer (made by webrtc-rs) is answered with
//! `publish_answer`, and a member whose media never connects is removed from the room by the
//! SFU's `Closed` event: the others get `left`, the member gets `media_error`.

mod common;

use std::sync::Arc;

use common::{server_with, stop, Client};
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
