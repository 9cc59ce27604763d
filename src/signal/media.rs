//! Media negotiation relay on `/rooms`: a joined member's offers, answers and candidates go to
//! its [`Participant`] in the SFU, and the SFU's [`SfuEvent`]s come back through one relay task
//! per participant. Only typed SFU calls here; no RTP.

use socketioxide::extract::{AckSender, SocketRef};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::protocol::{
    Candidate, ErrorCode, PublishAnswer, PublishOffer, SignalError, SubscribeAnswer, SubscribeOffer,
};
use super::rooms::RoomEvent;
use super::session::{Conn, Inbound};
use crate::sfu::{Participant, Sfu, SfuError, SfuEvent};

/// SFU events buffered towards one participant's relay task.
const EVENTS: usize = 64;

/// A joined member's media: its SFU participant and the task relaying the SFU's events.
pub(crate) struct Media {
    participant: Participant,
    relay: JoinHandle<()>,
}

impl Media {
    /// Joins the SFU side of `room`. `None` when the SFU refuses: the member then stays in the
    /// room for chat, and media events are refused with `media_error`.
    pub async fn start(
        sfu: &Sfu,
        conn: &Conn<RoomEvent>,
        room: &str,
        generation: u64,
    ) -> Option<Self> {
        let id = conn.id();
        let (tx, rx) = mpsc::channel(EVENTS);
        match sfu.join(room, &id, tx).await {
            Ok(participant) => {
                let relay = tokio::spawn(relay(
                    conn.socket.clone(),
                    rx,
                    conn.myself.clone(),
                    generation,
                ));
                Some(Self { participant, relay })
            }
            Err(e) => {
                tracing::warn!(room, participant = %id, error = %e, "media unavailable for this member");
                None
            }
        }
    }

    /// Removes the participant from the SFU and ends the relay task before returning.
    pub async fn stop(self) {
        self.participant.leave().await;
        self.relay.abort();
        let _ = self.relay.await;
    }
}

/// Forwards the SFU's events to the socket until the SFU closes the channel or the media ends.
async fn relay(
    socket: SocketRef,
    mut events: mpsc::Receiver<SfuEvent>,
    myself: mpsc::Sender<Inbound<RoomEvent>>,
    generation: u64,
) {
    while let Some(event) = events.recv().await {
        match event {
            SfuEvent::SubscribeOffer { sdp, tracks } => {
                let _ = socket.emit(
                    "subscribe_offer",
                    &SubscribeOffer {
                        sdp: &sdp,
                        tracks: &tracks,
                    },
                );
            }
            SfuEvent::Candidate { pc, candidate } => {
                let _ = socket.emit(
                    "candidate",
                    &Candidate {
                        pc,
                        candidate: Some(candidate),
                    },
                );
            }
            SfuEvent::Closed { reason } => {
                // The session owns room membership: let it remove the member, in order.
                let event = RoomEvent::MediaClosed { generation, reason };
                let _ = myself.send(Inbound { event, ack: None }).await;
                break;
            }
        }
    }
}

/// `publish_offer`, `subscribe_answer` and `candidate` from a joined member.
pub(crate) async fn handle(
    media: Option<&Media>,
    conn: &Conn<RoomEvent>,
    event: RoomEvent,
    ack: Option<AckSender>,
) {
    let name = event.name();
    let Some(media) = media else {
        let err = SignalError::new(
            ErrorCode::MediaError,
            name,
            "media is unavailable for this member",
        );
        return conn.refuse(err, ack);
    };
    let p = &media.participant;
    let result = match event {
        RoomEvent::PublishOffer(PublishOffer { sdp, tracks }) => {
            p.publish_offer(sdp, tracks).await.map(|sdp| {
                let _ = conn.socket.emit("publish_answer", &PublishAnswer { sdp });
            })
        }
        RoomEvent::SubscribeAnswer(SubscribeAnswer { sdp }) => p.subscribe_answer(sdp).await,
        RoomEvent::Candidate(Candidate { pc, candidate }) => p.add_candidate(pc, candidate).await,
        _ => Ok(()),
    };
    match result {
        Ok(()) => Conn::<RoomEvent>::ok(ack),
        Err(e) => conn.refuse(sfu_error(name, &e), ack),
    }
}

/// The error code for each way the SFU refuses.
pub fn sfu_error(event: &str, e: &SfuError) -> SignalError {
    let code = match e {
        SfuError::BadSdp(_) => ErrorCode::BadSdp,
        SfuError::BadCandidate(_) => ErrorCode::BadCandidate,
        SfuError::TooManyTracks(_) => ErrorCode::TooManyTracks,
        SfuError::NoPendingOffer => ErrorCode::NoPendingOffer,
        SfuError::Gone | SfuError::Internal(_) => ErrorCode::MediaError,
    };
    SignalError::new(code, event, e.to_string())
}
