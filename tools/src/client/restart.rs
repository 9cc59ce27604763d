//! ICE restart on the headless participant, as the web client does it: a connection that goes
//! `disconnected` or `failed` restarts ICE — the publisher with a re-offer carrying new
//! credentials (`RTCOfferOptions::ice_restart`), the subscriber by asking the server for a
//! restart offer (`restart_ice`) — and again every [`RETRY`] until it is `Connected`.
//!
//! Why again: a webrtc-ice agent gives up on a candidate pair after 7 unanswered checks
//! (~1.5 s), so a restart made while the path is still down checks nothing once the path is
//! back. Restarting on a period bounds the time from "path back" to "media" by about one period.

use std::time::{Duration, Instant};

use webrtc::peer_connection::offer_answer_options::RTCOfferOptions;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::signaling_state::RTCSignalingState;
use webrtc::peer_connection::RTCPeerConnection;

use super::link::{Link, Outbound};
use crate::sfu::ice_start::wait_gathered;
use crate::sfu::{PcKind, PublishedTrack};

/// How often a connection that is still down restarts ICE again.
pub(crate) const RETRY: Duration = Duration::from_millis(1500);
/// How long a restart offer waits for the new candidates it carries.
const GATHER_WAIT: Duration = Duration::from_secs(2);

/// When each connection's next restart is due while it is down. Pure: time is passed in.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    due: [Option<Instant>; 2],
    was_up: [bool; 2],
}

impl Recovery {
    /// A connection changed state; true when it must restart now. A connection that was up
    /// and is `Connecting` again is being restarted by the other side (the server's restart
    /// offer): it is down too, and retried like one, but not restarted again at once.
    pub fn on_state(&mut self, kind: PcKind, state: RTCPeerConnectionState, now: Instant) -> bool {
        let k = kind as usize;
        let due = &mut self.due[k];
        match state {
            RTCPeerConnectionState::Disconnected | RTCPeerConnectionState::Failed => {
                let first = due.is_none();
                due.get_or_insert(now + RETRY);
                first
            }
            RTCPeerConnectionState::Connecting if self.was_up[k] => {
                due.get_or_insert(now + RETRY);
                false
            }
            RTCPeerConnectionState::Connected => {
                self.was_up[k] = true;
                *due = None;
                false
            }
            RTCPeerConnectionState::Closed => {
                *due = None;
                false
            }
            _ => false,
        }
    }

    /// The earliest due restart, if any connection is down.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.iter().flatten().min().copied()
    }

    /// The connections whose restart is due at `now`; each is re-armed for one [`RETRY`] later.
    pub fn take_due(&mut self, now: Instant) -> Vec<PcKind> {
        let mut kinds = Vec::new();
        for kind in [PcKind::Publisher, PcKind::Subscriber] {
            if let Some(due) = &mut self.due[kind as usize] {
                if *due <= now {
                    *due = now + RETRY;
                    kinds.push(kind);
                }
            }
        }
        kinds
    }
}

/// Restarts ICE on `kind`. A publisher with an offer still out waits for the next retry.
pub(crate) async fn restart(
    kind: PcKind,
    publisher: &RTCPeerConnection,
    tracks: &[PublishedTrack],
    link: &Link,
) {
    match kind {
        PcKind::Subscriber => link.send(Outbound::RestartIce(kind)).await,
        PcKind::Publisher => {
            if publisher.signaling_state() != RTCSignalingState::Stable {
                return;
            }
            match restart_offer(publisher).await {
                Ok(sdp) => {
                    let tracks = tracks.to_vec();
                    link.send(Outbound::PublishOffer { sdp, tracks }).await;
                }
                Err(e) => tracing::warn!(error = %e, "publisher ICE restart failed"),
            }
        }
    }
}

async fn restart_offer(pc: &RTCPeerConnection) -> webrtc::error::Result<String> {
    let options = RTCOfferOptions {
        ice_restart: true,
        ..Default::default()
    };
    let offer = pc.create_offer(Some(options)).await?;
    pc.set_local_description(offer).await?;
    // The offer carries the new candidates: the server drops those trickled before it.
    wait_gathered(pc, GATHER_WAIT).await;
    Ok(pc
        .local_description()
        .await
        .map(|d| d.sdp)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use RTCPeerConnectionState as S;

    #[test]
    fn a_lost_connection_restarts_at_once_then_every_retry_until_connected() {
        let mut r = Recovery::default();
        let t0 = Instant::now();
        assert!(r.on_state(PcKind::Subscriber, S::Disconnected, t0));
        assert!(
            !r.on_state(PcKind::Subscriber, S::Failed, t0),
            "already restarting"
        );
        assert!(r.take_due(t0 + RETRY / 2).is_empty());
        assert_eq!(r.take_due(t0 + RETRY), vec![PcKind::Subscriber]);
        assert_eq!(r.next_due(), Some(t0 + RETRY * 2));
        assert!(!r.on_state(PcKind::Subscriber, S::Connected, t0 + RETRY));
        assert_eq!(r.next_due(), None);
        assert!(r.take_due(t0 + RETRY * 3).is_empty());
    }

    #[test]
    fn a_connection_restarted_by_the_server_is_retried_but_not_restarted_at_once() {
        let mut r = Recovery::default();
        let t0 = Instant::now();
        assert!(
            !r.on_state(PcKind::Subscriber, S::Connecting, t0),
            "first start"
        );
        assert_eq!(r.next_due(), None);
        r.on_state(PcKind::Subscriber, S::Connected, t0);
        assert!(!r.on_state(PcKind::Subscriber, S::Connecting, t0));
        assert_eq!(r.take_due(t0 + RETRY), vec![PcKind::Subscriber]);
    }

    #[test]
    fn connections_recover_independently() {
        let mut r = Recovery::default();
        let t0 = Instant::now();
        assert!(r.on_state(PcKind::Publisher, S::Disconnected, t0));
        assert!(r.on_state(PcKind::Subscriber, S::Disconnected, t0 + RETRY / 2));
        assert_eq!(r.take_due(t0 + RETRY), vec![PcKind::Publisher]);
        r.on_state(PcKind::Publisher, S::Connected, t0 + RETRY);
        assert_eq!(r.take_due(t0 + RETRY * 2), vec![PcKind::Subscriber]);
    }
}
