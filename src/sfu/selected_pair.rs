//! Which kind of path a connection took: the remote candidate type of ICE's selected pair,
//! counted in [`crate::metrics::CandidateTypes`] when a connection comes up. It tells the
//! admin how many participants need TURN (`relay`) and how many reach the media port directly.

use std::sync::Arc;

use webrtc::peer_connection::RTCPeerConnection;

use crate::metrics::Metrics;

/// Counts `pc`'s selected pair once it is connected.
pub(super) async fn count_remote_type(pc: Arc<RTCPeerConnection>, metrics: Arc<Metrics>) {
    let dtls = pc.sctp().transport();
    let kind = match dtls.ice_transport().get_selected_candidate_pair().await {
        Some(pair) => pair.remote.typ.to_string(),
        None => "unknown".to_string(),
    };
    metrics.candidate_types.count(&kind);
}
