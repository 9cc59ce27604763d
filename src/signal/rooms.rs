//! Rooms on `/rooms`: `join` (acknowledged with the current members), `leave`, `state`,
//! `message`, and the media events handed to [`super::media`].
//!
//! Members receive deltas (`joined`, `left`, `updated`), never the whole roster. The rooms
//! themselves live in [`super::room_table`]: per-room state behind short synchronous sections,
//! so a joiner's member list and the deltas it receives afterwards never overlap or miss a
//! change, and each socket sees a room's changes in order. Each room is also a socketioxide room
//! of the same name, so a chat line is encoded once for all its recipients.
//!
//! One session task per socket handles its events in order. It never waits on the SFU: media
//! events go to the member's own worker ([`Media`]). It also listens for its membership's
//! eviction (the SFU gave up on the media, or the client stopped reading), which it handles
//! like a `leave` followed by an `error`.

use std::sync::Arc;

use axum::http::header::HOST;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde_json::Value as Json;
use socketioxide::extract::AckSender;
use tokio::sync::mpsc;

use super::limits::{check_display_name, check_room_name};
use super::media::{Media, MediaEvent};
use super::protocol::{
    clock, nothing, object, ErrorCode, JoinAck, JoinRequest, RoomMessage, RoomMessageOut,
    SignalError, StateUpdate,
};
use super::room_table::{Eviction, Joiner, RoomTable};
use super::session::{Conn, Ctx, Inbound, Replier, Service};
use crate::sfu::Sfu;
use crate::turn::IceServers;

pub(crate) enum RoomEvent {
    Join(JoinRequest),
    Leave,
    State(StateUpdate),
    Message(RoomMessage),
    Media(MediaEvent),
}

impl RoomEvent {
    pub fn name(&self) -> &'static str {
        match self {
            RoomEvent::Join(_) => "join",
            RoomEvent::Leave => "leave",
            RoomEvent::State(_) => "state",
            RoomEvent::Message(_) => "message",
            RoomEvent::Media(m) => m.name(),
        }
    }
}

/// What a session knows about its own membership.
struct Joined {
    room: String,
    id: String,
    name: String,
    media: Option<Media>,
    /// Evictions of this membership (one channel per membership, so none outlives it).
    evicted: mpsc::Receiver<Eviction>,
    reply: Replier,
}

pub(crate) struct Rooms {
    ctx: Arc<Ctx>,
    sfu: Sfu,
    table: RoomTable,
    /// Each joiner's `ice_servers` (fresh TURN credentials per participant).
    ice: Arc<IceServers>,
}

impl Rooms {
    pub fn new(ctx: Arc<Ctx>, sfu: Sfu, ice: Arc<IceServers>) -> Arc<Self> {
        let table = RoomTable::new(ctx.config.signaling.clone(), ctx.metrics.clone());
        Arc::new(Self {
            ctx,
            sfu,
            table,
            ice,
        })
    }

    async fn session(self: Arc<Self>, mut conn: Conn<RoomEvent>) {
        if !conn.started().await {
            return;
        }
        let mut joined: Option<Joined> = None;
        loop {
            let evicted = async {
                match joined.as_mut() {
                    Some(j) => j.evicted.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some(err) = evicted => {
                    if let Some(j) = joined.take() {
                        self.leave(j).await;
                    }
                    conn.answer(err, None);
                }
                inbound = conn.next() => match inbound {
                    Some(inbound) => self.handle(&conn, &mut joined, inbound).await,
                    None => break,
                },
            }
        }
        if let Some(j) = joined.take() {
            self.leave(j).await;
        }
    }

    async fn handle(
        &self,
        conn: &Conn<RoomEvent>,
        joined: &mut Option<Joined>,
        Inbound { event, ack }: Inbound<RoomEvent>,
    ) {
        let name = event.name();
        match (event, joined.as_ref()) {
            (RoomEvent::Join(req), None) => *joined = self.join(conn, req, ack).await,
            (RoomEvent::Join(_), Some(j)) => {
                let message = format!("already in room {:?}; leave first", j.room);
                conn.refuse(
                    SignalError::new(ErrorCode::AlreadyJoined, name, message),
                    ack,
                );
            }
            (_, None) => {
                let message = "join a room before sending room events";
                conn.refuse(SignalError::new(ErrorCode::NotInRoom, name, message), ack);
            }
            (RoomEvent::Leave, Some(_)) => {
                if let Some(j) = joined.take() {
                    self.leave(j).await;
                }
                Conn::<RoomEvent>::ok(ack);
            }
            (RoomEvent::State(update), Some(j)) => {
                self.table.update(&j.room, &j.id, &update);
                Conn::<RoomEvent>::ok(ack);
            }
            (RoomEvent::Message(m), Some(j)) => {
                let time = clock();
                let line = RoomMessageOut {
                    from: &j.id,
                    name: &j.name,
                    content: &m.content,
                    time: &time,
                };
                match self.table.chat(&j.room, &conn.socket, &line) {
                    Ok(()) => Conn::<RoomEvent>::ok(ack),
                    // The room's budget is shared: no strike against this sender.
                    Err(err) => conn.answer(err, ack),
                }
            }
            (RoomEvent::Media(event), Some(j)) => match &j.media {
                Some(media) => media.submit(&j.reply, event, ack),
                None => {
                    let message = "media is unavailable for this member";
                    conn.refuse(SignalError::new(ErrorCode::MediaError, name, message), ack);
                }
            },
        }
    }

    async fn join(
        &self,
        conn: &Conn<RoomEvent>,
        req: JoinRequest,
        ack: Option<AckSender>,
    ) -> Option<Joined> {
        let limits = &self.ctx.config.signaling;
        if let Err(message) = check_room_name(&req.room, limits.max_room_name_len) {
            let err = SignalError::new(ErrorCode::InvalidRoom, "join", message);
            conn.refuse(err, ack);
            return None;
        }
        if let Err(message) = check_display_name(&req.name, limits.max_display_name_len) {
            let err = SignalError::new(ErrorCode::InvalidName, "join", message);
            conn.refuse(err, ack);
            return None;
        }
        let name = req.name.trim().to_string();
        let id = conn.id();
        let room = req.room;
        let (evict, evicted) = mpsc::channel(1);
        let who = Joiner {
            socket: &conn.socket,
            id: &id,
            name: &name,
            evict: evict.clone(),
        };
        let mut ack = ack;
        let page_host = conn.socket.req_parts().headers.get(HOST);
        let ice_servers = self
            .ice
            .for_participant(&id, page_host.and_then(|h| h.to_str().ok()));
        let welcome = |members| {
            let reply = JoinAck {
                id: &id,
                room: &room,
                members,
                ice_servers: &ice_servers,
            };
            Conn::<RoomEvent>::reply(ack.take(), &reply);
        };
        if let Err(err) = self.table.join(&room, who, welcome) {
            // `welcome` was not called: the refusal answers the ack.
            conn.refuse(err, ack);
            return None;
        }
        tracing::info!(room = %room, participant = %id, "joined");
        let reply = conn.replier();
        let media = Media::start(&self.sfu, reply.clone(), &id, &room, evict).await;
        Some(Joined {
            room,
            id,
            name,
            media,
            evicted,
            reply,
        })
    }

    async fn leave(&self, joined: Joined) {
        self.table
            .leave(&joined.room, &joined.id, &joined.reply.socket);
        if let Some(media) = joined.media {
            media.stop().await;
        }
        tracing::info!(room = %joined.room, participant = %joined.id, "left");
    }
}

impl Service for Rooms {
    type Event = RoomEvent;

    fn parse(event: &str, args: Vec<Json>) -> Result<RoomEvent, SignalError> {
        Ok(match event {
            "join" => RoomEvent::Join(object(event, args)?),
            "leave" => nothing(event, args).map(|()| RoomEvent::Leave)?,
            "state" => RoomEvent::State(object(event, args)?),
            "message" => RoomEvent::Message(object(event, args)?),
            "publish_offer" => RoomEvent::Media(MediaEvent::PublishOffer(object(event, args)?)),
            "subscribe_answer" => {
                RoomEvent::Media(MediaEvent::SubscribeAnswer(object(event, args)?))
            }
            "candidate" => RoomEvent::Media(MediaEvent::Candidate(object(event, args)?)),
            "restart_ice" => RoomEvent::Media(MediaEvent::RestartIce(object(event, args)?)),
            _ => {
                return Err(SignalError::new(
                    ErrorCode::UnknownEvent,
                    event,
                    "no such event on namespace \"/rooms\"",
                ))
            }
        })
    }

    fn run(self: Arc<Self>, conn: Conn<RoomEvent>) -> BoxFuture<'static, ()> {
        self.session(conn).boxed()
    }

    fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }
}
