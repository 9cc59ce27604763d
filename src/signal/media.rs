//! Media negotiation relay on `/rooms`: a joined member's offers, answers and candidates go to
//! its [`Participant`] in the SFU, and the SFU's [`SfuEvent`]s come back to its socket. Only
//! typed SFU calls here; no RTP.
//!
//! Two tasks per member with media, so an SFU call never holds up the socket's session (a
//! publisher re-offer may wait seconds inside the SFU; chat, `state` and `leave` must not):
//! - the *worker* runs the member's media events one at a time, in arrival order, from a bounded
//!   queue, and answers their acks. A full queue refuses the event without a strike.
//! - the *relay* forwards the SFU's events. When the client's buffer is full it retries for
//!   [`STALL_LIMIT`]; a client still not reading then, or the SFU closing the member's media,
//!   evicts the member through its session, which removes it from the room in order. An event
//!   the SFU waits on (a subscriber offer) is therefore either delivered or ends the member.

use std::time::Duration;

use serde::Serialize;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::{SendError, SocketError};
use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::protocol::{
    Candidate, ErrorCode, PublishAnswer, PublishOffer, RestartIce, SignalError, SubscribeAnswer,
    SubscribeOffer,
};
use super::room_table::Evict;
use super::session::{Conn, Replier};
use crate::sfu::{Participant, PublishedTrack, Sfu, SfuError, SfuEvent, Source};

/// SFU events buffered towards one participant's relay task.
const EVENTS: usize = 64;
/// Media events queued per member behind the one the SFU is working on. Enough for a browser's
/// trickled candidates behind a slow re-offer; beyond it they are refused with `rate_limited`.
const JOBS: usize = 64;
/// How long the relay keeps retrying an event the client's full buffer refuses.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(5);
/// First pause between retries; doubled up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// A joined member's media event, for its worker.
pub(crate) enum MediaEvent {
    PublishOffer(PublishOffer),
    SubscribeAnswer(SubscribeAnswer),
    Candidate(Candidate),
    RestartIce(RestartIce),
}

impl MediaEvent {
    pub fn name(&self) -> &'static str {
        match self {
            MediaEvent::PublishOffer(_) => "publish_offer",
            MediaEvent::SubscribeAnswer(_) => "subscribe_answer",
            MediaEvent::Candidate(_) => "candidate",
            MediaEvent::RestartIce(_) => "restart_ice",
        }
    }
}

struct Job {
    event: MediaEvent,
    ack: Option<AckSender>,
}

/// A joined member's media: its worker (which owns the SFU participant) and its relay.
pub(crate) struct Media {
    jobs: mpsc::Sender<Job>,
    /// The sources whose tracks the SFU must not forward (a moderator's mute, or a role that
    /// may not publish them); the worker applies every change to the member's tracks.
    blocked: watch::Sender<BTreeSet<Source>>,
    stop: oneshot::Sender<()>,
    worker: JoinHandle<Participant>,
    relay: JoinHandle<()>,
}

impl Media {
    /// Joins the SFU side of `room`. `None` when the SFU refuses: the member then stays in the
    /// room for chat, and media events are refused with `media_error`.
    pub async fn start(
        sfu: &Sfu,
        reply: Replier,
        id: &str,
        room: &str,
        evict: Evict,
    ) -> Option<Self> {
        let (tx, rx) = mpsc::channel(EVENTS);
        let participant = match sfu.join(room, id, tx).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(room, participant = %id, error = %e, "media unavailable for this member");
                return None;
            }
        };
        let relay = tokio::spawn(relay(reply.socket.clone(), id.to_string(), rx, evict));
        let (jobs, queue) = mpsc::channel(JOBS);
        let (stop, stopped) = oneshot::channel();
        let (blocked, blocks) = watch::channel(BTreeSet::new());
        let worker = tokio::spawn(work(participant, queue, stopped, reply, blocks));
        Some(Self {
            jobs,
            blocked,
            stop,
            worker,
            relay,
        })
    }

    /// Queues a media event for the worker; refuses it (no strike) when the queue is full.
    pub fn submit(&self, reply: &Replier, event: MediaEvent, ack: Option<AckSender>) {
        let name = event.name();
        match self.jobs.try_send(Job { event, ack }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                let message = format!(
                    "{JOBS} media events are waiting for the SFU; this one was dropped, send it again later"
                );
                reply.answer(
                    SignalError::new(ErrorCode::RateLimited, name, message),
                    job.ack,
                );
            }
            Err(mpsc::error::TrySendError::Closed(job)) => reply.answer(left(name), job.ack),
        }
    }

    /// Blocks exactly `sources` from now on (their tracks are forwarded to no one).
    pub fn block(&self, sources: BTreeSet<Source>) {
        self.blocked.send_if_modified(|b| {
            let changed = *b != sources;
            *b = sources;
            changed
        });
    }

    /// Stops the worker (answering what it had not done), removes the participant from the SFU
    /// and ends the relay, in that order, before returning.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Ok(participant) = self.worker.await {
            participant.leave().await;
        }
        self.relay.abort();
        let _ = self.relay.await;
    }
}

/// Runs the member's media events in order until stopped; hands the participant back.
async fn work(
    participant: Participant,
    mut queue: mpsc::Receiver<Job>,
    mut stop: oneshot::Receiver<()>,
    reply: Replier,
    mut blocked: watch::Receiver<BTreeSet<Source>>,
) -> Participant {
    let mut mutes = Mutes::default();
    loop {
        let job = tokio::select! {
            biased;
            _ = &mut stop => break,
            Ok(()) = blocked.changed() => {
                mutes.apply(&participant, &blocked.borrow_and_update());
                continue;
            }
            job = queue.recv() => match job {
                Some(job) => job,
                None => break,
            },
        };
        let offered = match &job.event {
            MediaEvent::PublishOffer(offer) => Some(offer.tracks.clone()),
            _ => None,
        };
        let name = job.event.name();
        tokio::select! {
            biased;
            _ = &mut stop => {
                reply.answer(left(name), job.ack);
                break;
            }
            result = run(&participant, &reply.socket, job.event) => match result {
                Ok(()) => {
                    if let Some(tracks) = offered {
                        mutes.tracks = tracks;
                        mutes.apply(&participant, &blocked.borrow());
                    }
                    Conn::<()>::ok(job.ack)
                }
                Err(e) => reply.refuse(sfu_error(name, &e), job.ack),
            },
        }
    }
    queue.close();
    while let Ok(job) = queue.try_recv() {
        reply.answer(left(job.event.name()), job.ack);
    }
    participant
}

/// The member's declared tracks and which of their mids the SFU was told to mute.
#[derive(Default)]
struct Mutes {
    tracks: Vec<PublishedTrack>,
    muted: BTreeMap<String, bool>,
}

impl Mutes {
    /// Tells the SFU every change of a track's muting under `blocked`.
    fn apply(&mut self, p: &Participant, blocked: &BTreeSet<Source>) {
        for t in &self.tracks {
            let mute = blocked.contains(&t.source);
            // An unmuted track was never muted: only changes are sent.
            let was = self.muted.get(&t.mid).copied().unwrap_or(false);
            if mute != was {
                p.set_muted(&t.mid, mute);
                self.muted.insert(t.mid.clone(), mute);
            }
        }
    }
}

/// One SFU call. The publisher's answer is emitted before the event is acknowledged.
async fn run(p: &Participant, socket: &SocketRef, event: MediaEvent) -> Result<(), SfuError> {
    match event {
        MediaEvent::PublishOffer(PublishOffer { sdp, tracks }) => {
            let sdp = p.publish_offer(sdp, tracks).await?;
            let _ = socket.emit("publish_answer", &PublishAnswer { sdp });
            Ok(())
        }
        MediaEvent::SubscribeAnswer(SubscribeAnswer { sdp }) => p.subscribe_answer(sdp).await,
        MediaEvent::Candidate(Candidate { pc, candidate }) => p.add_candidate(pc, candidate).await,
        MediaEvent::RestartIce(RestartIce { pc }) => p.restart_ice(pc),
    }
}

/// The answer to a media event its member's leaving overtook.
fn left(event: &str) -> SignalError {
    SignalError::new(
        ErrorCode::NotInRoom,
        event,
        "left the room before this media event was handled",
    )
}

/// Why a relayed event did not reach the client.
enum Undelivered {
    /// The socket is gone; its session is cleaning up already.
    Gone,
    /// The client has not read for too long (or the event could not be encoded).
    Stalled(String),
}

/// Forwards the SFU's events to the socket until the media ends; evicts the member when the
/// SFU gives up on it or an event cannot be delivered.
async fn relay(socket: SocketRef, id: String, mut events: mpsc::Receiver<SfuEvent>, evict: Evict) {
    let reason = loop {
        let Some(event) = events.recv().await else {
            break "the SFU ended this member's media".to_string();
        };
        let sent = match event {
            SfuEvent::SubscribeOffer { sdp, tracks } => {
                let offer = SubscribeOffer {
                    sdp: &sdp,
                    tracks: &tracks,
                };
                deliver(&socket, &id, "subscribe_offer", &offer).await
            }
            SfuEvent::Candidate { pc, candidate } => {
                let candidate = Candidate {
                    pc,
                    candidate: Some(candidate),
                };
                deliver(&socket, &id, "candidate", &candidate).await
            }
            SfuEvent::Closed { reason } => break reason,
        };
        match sent {
            Ok(()) => {}
            Err(Undelivered::Gone) => return,
            Err(Undelivered::Stalled(reason)) => break reason,
        }
    };
    // Capacity 1: if an eviction is already pending, this one adds nothing.
    let _ = evict.try_send(SignalError::new(ErrorCode::MediaError, "media", reason));
}

/// Emits `event`, retrying while the client's buffer is full, for at most [`STALL_LIMIT`].
async fn deliver<T: Serialize + ?Sized>(
    socket: &SocketRef,
    id: &str,
    event: &str,
    data: &T,
) -> Result<(), Undelivered> {
    let deadline = Instant::now() + STALL_LIMIT;
    let mut pause = FIRST_PAUSE;
    loop {
        match socket.emit(event, data) {
            Ok(()) => return Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(SendError::Socket(SocketError::Closed)) => return Err(Undelivered::Gone),
            Err(e) => {
                tracing::warn!(participant = %id, event, error = %e, "media event undeliverable");
                return Err(Undelivered::Stalled(format!(
                    "could not deliver {event}: {e}; media stopped"
                )));
            }
        }
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
