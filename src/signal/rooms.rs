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
use tokio::sync::{mpsc, watch};

use super::limits::{check_display_name, check_room_name};
use super::media::{Media, MediaEvent};
use super::protocol::{
    clock, nothing, object, ErrorCode, JoinAck, JoinRequest, Moderate, PolicyView, RoomMessage,
    RoomMessageOut, SignalError, StateUpdate,
};
use super::room_table::{Door, Eviction, Joiner, Restrictions, RoomTable};
use super::session::{Conn, Ctx, Inbound, Replier, Service};
use crate::access::policy::{permits, Action};
use crate::access::{Access, Credentials, Denial, Role};
use crate::cluster::{Cluster, Placement};
use crate::sfu::{Sfu, Source};
use crate::turn::IceServers;

pub(crate) enum RoomEvent {
    Join(JoinRequest),
    Leave,
    State(StateUpdate),
    Message(RoomMessage),
    Media(MediaEvent),
    Moderate(Moderate),
}

impl RoomEvent {
    pub fn name(&self) -> &'static str {
        match self {
            RoomEvent::Join(_) => "join",
            RoomEvent::Leave => "leave",
            RoomEvent::State(_) => "state",
            RoomEvent::Message(_) => "message",
            RoomEvent::Media(m) => m.name(),
            RoomEvent::Moderate(_) => "moderate",
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
    /// Its role and moderator mutes, as the room table changes them.
    control: watch::Receiver<Restrictions>,
    reply: Replier,
}

enum Told {
    Evicted(Eviction),
    Restricted,
}

pub(crate) struct Rooms {
    ctx: Arc<Ctx>,
    sfu: Sfu,
    pub(super) table: RoomTable,
    pub(super) access: Arc<Access>,
    /// Each joiner's `ice_servers` (fresh TURN credentials per participant).
    ice: Arc<IceServers>,
    /// Which node hosts each room, when this node is one of several.
    cluster: Option<Arc<Cluster>>,
}

impl Rooms {
    pub fn new(
        ctx: Arc<Ctx>,
        sfu: Sfu,
        ice: Arc<IceServers>,
        access: Arc<Access>,
        cluster: Option<Arc<Cluster>>,
    ) -> Arc<Self> {
        let table = RoomTable::new(ctx.config.signaling.clone(), ctx.metrics.clone());
        Arc::new(Self {
            ctx,
            sfu,
            table,
            ice,
            access,
            cluster,
        })
    }

    async fn session(self: Arc<Self>, mut conn: Conn<RoomEvent>) {
        if !conn.started().await {
            return;
        }
        let mut joined: Option<Joined> = None;
        loop {
            // What the membership hears from the room table: an eviction, or a change of
            // its role or mutes (a closed watch means the room is gone: the eviction follows).
            let told = async {
                let Some(j) = joined.as_mut() else {
                    return std::future::pending().await;
                };
                tokio::select! {
                    biased;
                    Some(err) = j.evicted.recv() => Told::Evicted(err),
                    Ok(()) = j.control.changed() => Told::Restricted,
                    else => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                told = told => match told {
                    Told::Evicted(err) => {
                        if let Some(j) = joined.take() {
                            self.leave(j).await;
                        }
                        conn.answer(err, None);
                    }
                    Told::Restricted => {
                        if let Some(j) = joined.as_mut() {
                            self.restrict(j);
                        }
                    }
                },
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
                if let Err(d) = self.permits(j, Action::Chat) {
                    return conn.answer(SignalError::denied(name, d), ack);
                }
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
            (RoomEvent::Moderate(action), Some(j)) => {
                let policy = self.access.policy(&j.room);
                match self.table.moderate(&j.room, Some(&j.id), &policy, &action) {
                    Ok(()) => Conn::<RoomEvent>::ok(ack),
                    Err(err) => conn.answer(err, ack),
                }
            }
            (RoomEvent::Media(event), Some(j)) => match &j.media {
                Some(media) => {
                    if let MediaEvent::PublishOffer(offer) = &event {
                        let denied = offer
                            .tracks
                            .iter()
                            .find_map(|t| self.permits(j, Action::Publish(t.source)).err());
                        if let Some(d) = denied {
                            return conn.answer(SignalError::denied(name, d), ack);
                        }
                        self.table.set_tracks(&j.room, &j.id, offer.tracks.clone());
                    }
                    media.submit(&j.reply, event, ack)
                }
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
        // Placement comes before the credentials: the host checks them, once.
        if let Some(cluster) = &self.cluster {
            match cluster
                .place(&req.room, self.table.contains(&req.room))
                .await
            {
                Ok(Placement::Here) => {}
                Ok(Placement::Elsewhere { node, url }) => {
                    conn.answer(SignalError::elsewhere(&req.room, &node, &url), ack);
                    return None;
                }
                Err(e) => {
                    tracing::info!(room = %req.room, participant = %conn.id(), error = %e, "join refused: no placement");
                    let err =
                        SignalError::new(ErrorCode::ClusterUnavailable, "join", e.to_string());
                    conn.answer(err, ack);
                    return None;
                }
            }
        }
        let creds = Credentials {
            token: req.token.as_deref().or(conn.auth_token.as_deref()),
            password: req.password.as_deref(),
            ip: conn.client,
        };
        let admitted = match self
            .access
            .admit(&req.room, creds, self.ctx.clock.now())
            .await
        {
            Ok(a) => a,
            Err(d) => {
                // A wrong password or token is answered without a strike: the limiter of
                // guesses is the password's own; the reason logged never holds the secret.
                tracing::info!(room = %req.room, participant = %conn.id(), reason = %d, "join refused");
                conn.answer(SignalError::denied("join", d), ack);
                return None;
            }
        };
        let name = match &admitted.name {
            Some(fixed) => fixed.clone(),
            None => req.name.trim().to_string(),
        };
        let id = conn.id();
        let room = req.room;
        let policy = self.access.policy(&room);
        let (evict, evicted) = mpsc::channel(1);
        let (control, restrictions) = watch::channel(Restrictions {
            role: admitted.role,
            forced: Default::default(),
        });
        let mut ban_keys: Vec<String> = admitted
            .identity
            .iter()
            .map(|i| format!("id:{i}"))
            .collect();
        if ban_keys.is_empty() {
            ban_keys.extend(conn.client.map(|ip| format!("ip:{ip}")));
        }
        let who = Joiner {
            socket: &conn.socket,
            id: &id,
            name: &name,
            evict: evict.clone(),
            role: admitted.role,
            ban_keys,
            control,
        };
        let door = Door {
            cap: policy.cap(self.ctx.config.signaling.max_members_per_room),
            locked: policy.locked,
        };
        let mut ack = ack;
        let page_host = conn.socket.req_parts().headers.get(HOST);
        let ice_servers = self
            .ice
            .for_participant(&id, page_host.and_then(|h| h.to_str().ok()));
        let welcome = |members, locked| {
            let reply = JoinAck {
                id: &id,
                room: &room,
                members,
                ice_servers: &ice_servers,
                role: admitted.role,
                name: &name,
                policy: PolicyView {
                    chat: policy.chat,
                    publish: policy.publish,
                    self_unmute: policy.self_unmute,
                    locked,
                },
            };
            Conn::<RoomEvent>::reply(ack.take(), &reply);
        };
        if let Err(err) = self.table.join(&room, who, &door, welcome) {
            // `welcome` was not called: the refusal answers the ack.
            conn.refuse(err, ack);
            return None;
        }
        tracing::info!(room = %room, participant = %id, role = admitted.role.as_str(), "joined");
        let reply = conn.replier();
        let media = Media::start(&self.sfu, reply.clone(), &id, &room, evict).await;
        let mut joined = Joined {
            room,
            id,
            name,
            media,
            evicted,
            control: restrictions,
            reply,
        };
        self.restrict(&mut joined);
        Some(joined)
    }

    /// Whether member `j` may take `action` now (its role in the table, the room's policy).
    fn permits(&self, j: &Joined, action: Action) -> Result<(), Denial> {
        let role = self.table.role(&j.room, &j.id).unwrap_or(Role::Viewer);
        permits(role, &self.access.policy(&j.room), action)
    }

    /// Blocks the member's sources its role may not publish or a moderator muted.
    fn restrict(&self, j: &mut Joined) {
        let Restrictions { role, forced } = j.control.borrow_and_update().clone();
        let policy = self.access.policy(&j.room);
        let mut blocked = forced;
        for source in [
            Source::Camera,
            Source::Microphone,
            Source::Screen,
            Source::ScreenAudio,
        ] {
            if permits(role, &policy, Action::Publish(source)).is_err() {
                blocked.insert(source);
            }
        }
        if let Some(media) = &j.media {
            media.block(blocked);
        }
    }

    async fn leave(&self, joined: Joined) {
        let ended = self
            .table
            .leave(&joined.room, &joined.id, &joined.reply.socket);
        if let (true, Some(cluster)) = (ended, &self.cluster) {
            cluster.release(&joined.room);
        }
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
            "view" => RoomEvent::Media(MediaEvent::View(object(event, args)?)),
            "moderate" => RoomEvent::Moderate(object(event, args)?),
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
