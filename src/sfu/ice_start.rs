//! One webrtc-rs 0.17 trap, worked around in one place for the SFU and the headless client.
//!
//! webrtc-rs gives a connection's ICE agent the remote credentials only when the transport
//! start queued by the first negotiation runs. A re-offer applied before then compares its
//! ufrag with those still-empty credentials, takes it for an ICE restart and restarts the agent
//! with new local credentials the other side never learns: the connection never comes up. So
//! whoever applies a re-offer first waits for ICE to have started (left `New`).

use std::time::Duration;

use tokio::sync::watch;
use webrtc::ice_transport::ice_connection_state::RTCIceConnectionState;
use webrtc::peer_connection::RTCPeerConnection;

/// Whether a connection's ICE has started. Installing it takes the connection's
/// `on_ice_connection_state_change` handler.
pub struct IceStart(watch::Receiver<bool>);

impl IceStart {
    pub fn watch(pc: &RTCPeerConnection) -> Self {
        let (tx, rx) = watch::channel(false);
        pc.on_ice_connection_state_change(Box::new(move |state| {
            if state != RTCIceConnectionState::New {
                tx.send_replace(true);
            }
            Box::pin(async {})
        }));
        Self(rx)
    }

    /// Waits until ICE has started, at most `limit`; false if it had not by then (the caller
    /// applies its re-offer anyway and says so: a connect timeout deals with a dead link).
    pub async fn wait(&self, limit: Duration) -> bool {
        let mut rx = self.0.clone();
        tokio::time::timeout(limit, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Waits, at most `limit`, until `pc` has gathered its local candidates, so the description read
/// next carries them. After an ICE restart this matters: a candidate trickled before the other
/// side applied the restart description belongs to the old session and is dropped there.
pub async fn wait_gathered(pc: &RTCPeerConnection, limit: Duration) -> bool {
    let mut done = pc.gathering_complete_promise().await;
    tokio::time::timeout(limit, done.recv()).await.is_ok()
}
