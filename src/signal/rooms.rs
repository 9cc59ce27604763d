//! Rooms on `/rooms`: `join` (acknowledged with the current members), `leave`, `state`,
//! `message`, and the media events handed to [`super::media`].
//!
//! Members receive deltas (`joined`, `left`, `updated`), never the whole roster. Membership
//! changes and their deltas happen under one lock, so a joiner's member list and the deltas it
//! receives afterwards never overlap or miss a change. Each room is also a socketioxide room of
//! the same name, so a delta or chat line is encoded once for all its recipients.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde_json::Value as Json;
use socketioxide::extract::AckSender;
use tokio::sync::Mutex;

use super::limits::{check_display_name, check_room_name};
use super::media::{self, Media};
use super::protocol::{
    clock, nothing, object, Candidate, ErrorCode, JoinAck, JoinRequest, Left, MemberState,
    MemberView, PublishOffer, RoomMessage, RoomMessageOut, SignalError, StateUpdate,
    SubscribeAnswer, Updated,
};
use super::session::{Conn, Ctx, Inbound, Service};
use crate::metrics::GaugeGuard;
use crate::sfu::Sfu;

pub(crate) enum RoomEvent {
    Join(JoinRequest),
    Leave,
    State(StateUpdate),
    Message(RoomMessage),
    PublishOffer(PublishOffer),
    SubscribeAnswer(SubscribeAnswer),
    Candidate(Candidate),
    /// Internal, from the media relay: the SFU gave up on this member's media.
    MediaClosed {
        generation: u64,
        reason: String,
    },
}

impl RoomEvent {
    pub fn name(&self) -> &'static str {
        match self {
            RoomEvent::Join(_) => "join",
            RoomEvent::Leave => "leave",
            RoomEvent::State(_) => "state",
            RoomEvent::Message(_) => "message",
            RoomEvent::PublishOffer(_) => "publish_offer",
            RoomEvent::SubscribeAnswer(_) => "subscribe_answer",
            RoomEvent::Candidate(_) => "candidate",
            RoomEvent::MediaClosed { .. } => "media",
        }
    }
}

struct Member {
    id: String,
    name: String,
    state: MemberState,
    _gauge: GaugeGuard,
}

impl Member {
    fn view(&self) -> MemberView {
        MemberView {
            id: self.id.clone(),
            name: self.name.clone(),
            state: self.state,
        }
    }
}

struct Room {
    /// In joining order.
    members: Vec<Member>,
    _gauge: GaugeGuard,
}

/// What a session knows about its own membership.
struct Joined {
    room: String,
    name: String,
    generation: u64,
    media: Option<Media>,
}

pub(crate) struct Rooms {
    ctx: Arc<Ctx>,
    sfu: Sfu,
    rooms: Mutex<HashMap<String, Room>>,
}

impl Rooms {
    pub fn new(ctx: Arc<Ctx>, sfu: Sfu) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            sfu,
            rooms: Mutex::new(HashMap::new()),
        })
    }

    async fn session(self: Arc<Self>, mut conn: Conn<RoomEvent>) {
        if !conn.started().await {
            return;
        }
        let mut joined: Option<Joined> = None;
        let mut generation = 0;
        while let Some(Inbound { event, ack }) = conn.next().await {
            let name = event.name();
            match (event, joined.as_mut()) {
                (RoomEvent::Join(req), None) => {
                    generation += 1;
                    joined = self.join(&conn, req, ack, generation).await;
                }
                (RoomEvent::Join(_), Some(j)) => {
                    let message = format!("already in room {:?}; leave first", j.room);
                    conn.refuse(
                        SignalError::new(ErrorCode::AlreadyJoined, name, message),
                        ack,
                    );
                }
                (
                    RoomEvent::MediaClosed {
                        generation: g,
                        reason,
                    },
                    Some(j),
                ) => {
                    if g == j.generation {
                        if let Some(j) = joined.take() {
                            self.leave(&conn, j).await;
                        }
                        let err = SignalError::new(ErrorCode::MediaError, name, reason);
                        conn.refuse(err, None);
                    }
                }
                (RoomEvent::MediaClosed { .. }, None) => {}
                (_, None) => {
                    let err = SignalError::new(
                        ErrorCode::NotInRoom,
                        name,
                        "join a room before sending room events",
                    );
                    conn.refuse(err, ack);
                }
                (RoomEvent::Leave, Some(_)) => {
                    if let Some(j) = joined.take() {
                        self.leave(&conn, j).await;
                    }
                    Conn::<RoomEvent>::ok(ack);
                }
                (RoomEvent::State(update), Some(j)) => {
                    self.update(&conn, &j.room, &update).await;
                    Conn::<RoomEvent>::ok(ack);
                }
                (RoomEvent::Message(m), Some(j)) => {
                    let id = conn.id();
                    let time = clock();
                    let out = RoomMessageOut {
                        from: &id,
                        name: &j.name,
                        content: &m.content,
                        time: &time,
                    };
                    let _ = conn.socket.to(j.room.clone()).emit("message", &out).await;
                    Conn::<RoomEvent>::ok(ack);
                }
                (event, Some(j)) => media::handle(j.media.as_ref(), &conn, event, ack).await,
            }
        }
        if let Some(j) = joined.take() {
            self.leave(&conn, j).await;
        }
    }

    async fn join(
        &self,
        conn: &Conn<RoomEvent>,
        req: JoinRequest,
        ack: Option<AckSender>,
        generation: u64,
    ) -> Option<Joined> {
        let limits = &self.ctx.config.signaling;
        if let Err(message) = check_room_name(&req.room, limits.max_room_name_len) {
            conn.refuse(
                SignalError::new(ErrorCode::InvalidRoom, "join", message),
                ack,
            );
            return None;
        }
        let name = req.name.trim().to_string();
        if let Err(message) = check_display_name(&req.name, limits.max_display_name_len) {
            conn.refuse(
                SignalError::new(ErrorCode::InvalidName, "join", message),
                ack,
            );
            return None;
        }
        let id = conn.id();
        let room_name = req.room;
        {
            let mut rooms = self.rooms.lock().await;
            let refusal = match rooms.get(&room_name) {
                None if rooms.len() >= limits.max_rooms => Some(SignalError::new(
                    ErrorCode::TooManyRooms,
                    "join",
                    format!("the server has {} rooms, its limit", limits.max_rooms),
                )),
                Some(room) if room.members.len() >= limits.max_members_per_room => {
                    Some(SignalError::new(
                        ErrorCode::RoomFull,
                        "join",
                        format!(
                            "room {room_name:?} has {} members, the limit",
                            limits.max_members_per_room
                        ),
                    ))
                }
                _ => None,
            };
            if let Some(err) = refusal {
                conn.refuse(err, ack);
                return None;
            }
            let metrics = &self.ctx.metrics;
            let room = rooms.entry(room_name.clone()).or_insert_with(|| Room {
                members: Vec::new(),
                _gauge: GaugeGuard::new(metrics, |m| &m.rooms),
            });
            let members: Vec<MemberView> = room.members.iter().map(Member::view).collect();
            let me = Member {
                id: id.clone(),
                name: name.clone(),
                state: MemberState::default(),
                _gauge: GaugeGuard::new(metrics, |m| &m.participants),
            };
            let _ = conn
                .socket
                .to(room_name.clone())
                .emit("joined", &me.view())
                .await;
            room.members.push(me);
            conn.socket.join(room_name.clone());
            let reply = JoinAck {
                id: &id,
                room: &room_name,
                members,
                ice_servers: &self.ctx.config.media.ice_servers,
            };
            Conn::<RoomEvent>::reply(ack, &reply);
        }
        tracing::info!(room = %room_name, participant = %id, "joined");
        let media = Media::start(&self.sfu, conn, &room_name, generation).await;
        Some(Joined {
            room: room_name,
            name,
            generation,
            media,
        })
    }

    async fn leave(&self, conn: &Conn<RoomEvent>, joined: Joined) {
        let id = conn.id();
        {
            let mut rooms = self.rooms.lock().await;
            if let Some(room) = rooms.get_mut(&joined.room) {
                room.members.retain(|m| m.id != id);
                if room.members.is_empty() {
                    rooms.remove(&joined.room);
                }
            }
            conn.socket.leave(joined.room.clone());
            let _ = conn
                .socket
                .to(joined.room.clone())
                .emit("left", &Left { id: &id })
                .await;
        }
        if let Some(media) = joined.media {
            media.stop().await;
        }
        tracing::info!(room = %joined.room, participant = %id, "left");
    }

    async fn update(&self, conn: &Conn<RoomEvent>, room: &str, update: &StateUpdate) {
        let id = conn.id();
        let mut rooms = self.rooms.lock().await;
        let Some(member) = rooms
            .get_mut(room)
            .and_then(|r| r.members.iter_mut().find(|m| m.id == id))
        else {
            return;
        };
        member.state.apply(update);
        let state = member.state;
        let _ = conn
            .socket
            .to(room.to_string())
            .emit("updated", &Updated { id: &id, state })
            .await;
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
            "publish_offer" => RoomEvent::PublishOffer(object(event, args)?),
            "subscribe_answer" => RoomEvent::SubscribeAnswer(object(event, args)?),
            "candidate" => RoomEvent::Candidate(object(event, args)?),
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
