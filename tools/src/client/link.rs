//! How a headless participant talks to the server: over Socket.IO (`/rooms`, as a browser
//! does) or, in in-process tests, straight to an [`Sfu`]. Both turn the server's side into the
//! same stream of [`Inbound`] events, so the participant's logic is one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::sfu::{
    IceCandidateInit, Participant, PcKind, PublishedTrack, Sfu, SfuError, SfuEvent, TileView,
    TrackInfo,
};
use crate::sync::lock;

/// A refusal from the server, as the protocol's `error` event carries it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub event: String,
}

/// What the server said, in arrival order.
#[derive(Debug)]
pub(crate) enum Inbound {
    PublishAnswer(String),
    SubscribeOffer {
        sdp: String,
        tracks: Vec<TrackInfo>,
    },
    Candidate {
        pc: PcKind,
        candidate: Option<IceCandidateInit>,
    },
    Error(ServerError),
    Closed(String),
    /// To a publisher: which of its simulcast layers anyone needs.
    Layers {
        mid: String,
        active: BTreeMap<String, bool>,
    },
    /// To a subscriber: the layer its track `mid` carries now.
    Layer {
        mid: String,
        rid: String,
    },
    Speaking {
        id: String,
        speaking: bool,
    },
}

/// What the participant says.
pub(crate) enum Outbound {
    PublishOffer {
        sdp: String,
        tracks: Vec<PublishedTrack>,
    },
    SubscribeAnswer(String),
    Candidate {
        pc: PcKind,
        candidate: IceCandidateInit,
    },
    View(Vec<TileView>),
    /// Asks the server to restart ICE on a connection it offers (the subscriber).
    RestartIce(PcKind),
}

pub(crate) enum Link {
    Direct {
        participant: Mutex<Option<Arc<Participant>>>,
        inbound: mpsc::UnboundedSender<Inbound>,
    },
    SocketIo {
        client: Client,
    },
}

/// The refusal the server would send for `e`: signaling's own mapping, so both ends agree.
fn sfu_error(e: SfuError, event: &str) -> ServerError {
    let e = crate::signal::sfu_error(event, &e);
    let code = serde_json::to_value(e.code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    ServerError {
        code,
        message: e.message,
        event: e.event,
    }
}

impl Link {
    /// Joins `room` in-process; returns the link, the participant id and the event stream.
    pub async fn direct(
        sfu: &Sfu,
        room: &str,
        id: &str,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Inbound>), ServerError> {
        let (events_tx, mut events_rx) = mpsc::channel(256);
        let participant = sfu
            .join(room, id, events_tx)
            .await
            .map_err(|e| sfu_error(e, "join"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let relay = tx.clone();
        // Ends when the participant (the events' sender) is gone.
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                let inbound = match event {
                    SfuEvent::SubscribeOffer { sdp, tracks } => {
                        Inbound::SubscribeOffer { sdp, tracks }
                    }
                    SfuEvent::Candidate { pc, candidate } => Inbound::Candidate {
                        pc,
                        candidate: Some(candidate),
                    },
                    SfuEvent::Closed { reason } => Inbound::Closed(reason),
                    SfuEvent::Layers { mid, active } => Inbound::Layers { mid, active },
                    SfuEvent::Layer { mid, rid } => Inbound::Layer { mid, rid },
                    SfuEvent::Speaking { id, speaking } => Inbound::Speaking { id, speaking },
                };
                if relay.send(inbound).is_err() {
                    break;
                }
            }
        });
        Ok((
            Link::Direct {
                participant: Mutex::new(Some(Arc::new(participant))),
                inbound: tx,
            },
            rx,
        ))
    }

    /// Connects to `url` (namespace `/rooms`) and joins `room` as `name`; returns the link,
    /// the id the server gave, and the event stream.
    pub async fn socket_io(
        url: &str,
        room: &str,
        name: &str,
    ) -> anyhow::Result<(Self, String, mpsc::UnboundedReceiver<Inbound>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let on = |tx: mpsc::UnboundedSender<Inbound>, parse: fn(Value) -> Option<Inbound>| {
            move |payload: Payload, _c: Client| {
                let tx = tx.clone();
                async move {
                    if let Some(inbound) = first_value(payload).and_then(parse) {
                        let _ = tx.send(inbound);
                    }
                }
                .boxed()
            }
        };
        let builder = |url: &str| {
            ClientBuilder::new(url)
                .on(
                    "publish_answer",
                    on(tx.clone(), |v| {
                        Some(Inbound::PublishAnswer(v.get("sdp")?.as_str()?.to_string()))
                    }),
                )
                .on(
                    "subscribe_offer",
                    on(tx.clone(), |v| {
                        #[derive(Deserialize)]
                        struct Offer {
                            sdp: String,
                            tracks: Vec<TrackInfo>,
                        }
                        let o: Offer = serde_json::from_value(v).ok()?;
                        Some(Inbound::SubscribeOffer {
                            sdp: o.sdp,
                            tracks: o.tracks,
                        })
                    }),
                )
                .on(
                    "candidate",
                    on(tx.clone(), |v| {
                        #[derive(Deserialize)]
                        struct Cand {
                            pc: PcKind,
                            candidate: Option<IceCandidateInit>,
                        }
                        let c: Cand = serde_json::from_value(v).ok()?;
                        Some(Inbound::Candidate {
                            pc: c.pc,
                            candidate: c.candidate,
                        })
                    }),
                )
                .on(
                    "layers",
                    on(tx.clone(), |v| {
                        #[derive(Deserialize)]
                        struct L {
                            mid: String,
                            active: BTreeMap<String, bool>,
                        }
                        let l: L = serde_json::from_value(v).ok()?;
                        Some(Inbound::Layers {
                            mid: l.mid,
                            active: l.active,
                        })
                    }),
                )
                .on(
                    "layer",
                    on(tx.clone(), |v| {
                        Some(Inbound::Layer {
                            mid: v.get("mid")?.as_str()?.to_string(),
                            rid: v.get("rid")?.as_str()?.to_string(),
                        })
                    }),
                )
                .on(
                    "speaking",
                    on(tx.clone(), |v| {
                        Some(Inbound::Speaking {
                            id: v.get("id")?.as_str()?.to_string(),
                            speaking: v.get("speaking")?.as_bool()?,
                        })
                    }),
                )
                .on(
                    "error",
                    on(tx.clone(), |v| {
                        Some(Inbound::Error(serde_json::from_value(v).ok()?))
                    }),
                )
        };
        let (client, id) = join_rooms(url, builder, room, name).await?;
        Ok((Link::SocketIo { client }, id, rx))
    }

    pub async fn send(&self, out: Outbound) {
        match self {
            Link::Direct {
                participant,
                inbound,
            } => {
                let p = lock(&participant).clone();
                let Some(p) = p else { return };
                let result = match out {
                    Outbound::PublishOffer { sdp, tracks } => p
                        .publish_offer(sdp, tracks)
                        .await
                        .map(|sdp| Some(Inbound::PublishAnswer(sdp)))
                        .map_err(|e| sfu_error(e, "publish_offer")),
                    Outbound::SubscribeAnswer(sdp) => p
                        .subscribe_answer(sdp)
                        .await
                        .map(|_| None)
                        .map_err(|e| sfu_error(e, "subscribe_answer")),
                    Outbound::Candidate { pc, candidate } => p
                        .add_candidate(pc, Some(candidate))
                        .await
                        .map(|_| None)
                        .map_err(|e| sfu_error(e, "candidate")),
                    Outbound::View(tracks) => {
                        p.set_view(tracks);
                        Ok(None)
                    }
                    Outbound::RestartIce(pc) => p
                        .restart_ice(pc)
                        .map(|_| None)
                        .map_err(|e| sfu_error(e, "restart_ice")),
                };
                match result {
                    Ok(Some(i)) => {
                        let _ = inbound.send(i);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = inbound.send(Inbound::Error(e));
                    }
                }
            }
            Link::SocketIo { client } => {
                let (event, body) = match out {
                    Outbound::PublishOffer { sdp, tracks } => {
                        ("publish_offer", json!({ "sdp": sdp, "tracks": tracks }))
                    }
                    Outbound::SubscribeAnswer(sdp) => ("subscribe_answer", json!({ "sdp": sdp })),
                    Outbound::Candidate { pc, candidate } => {
                        ("candidate", json!({ "pc": pc, "candidate": candidate }))
                    }
                    Outbound::View(tracks) => ("view", json!({ "tracks": tracks })),
                    Outbound::RestartIce(pc) => ("restart_ice", json!({ "pc": pc })),
                };
                if let Err(e) = client.emit(event, body).await {
                    tracing::debug!(error = %e, event, "emit failed");
                }
            }
        }
    }

    /// Leaves the room and closes the link.
    pub async fn leave(&self) {
        match self {
            Link::Direct { participant, .. } => {
                let p = lock(&participant).take();
                // The driver has stopped, so this is normally the last reference; otherwise
                // dropping it removes the participant without waiting.
                if let Some(Ok(p)) = p.map(Arc::try_unwrap) {
                    p.leave().await;
                }
            }
            Link::SocketIo { client } => {
                let _ = client.emit("leave", json!({})).await;
                let _ = client.disconnect().await;
            }
        }
    }
}

/// The first argument of a received Socket.IO event, if it has one.
pub fn first_value(payload: Payload) -> Option<Value> {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => Some(values.swap_remove(0)),
        _ => None,
    }
}

/// How many times a join follows `room_elsewhere` to another cluster node before giving up
/// (one is enough unless the room moves meanwhile).
const MAX_HOPS: usize = 3;

/// A `join` refused with `room_elsewhere`: another cluster node, at this URL, hosts the room.
#[derive(Debug)]
pub struct Elsewhere(pub String);

impl std::fmt::Display for Elsewhere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the room is hosted at {}", self.0)
    }
}

impl std::error::Error for Elsewhere {}

/// Joins `room` as `name` on the server at `url`, following the cluster's `room_elsewhere` to
/// the node that hosts the room, as the web page does. `builder` makes a client for a URL with
/// its event handlers set. Returns the client with the id the server gave. Shared by the
/// headless participant and the load tester's signal-only clients.
pub async fn join_rooms(
    url: &str,
    builder: impl Fn(&str) -> ClientBuilder,
    room: &str,
    name: &str,
) -> anyhow::Result<(Client, String)> {
    let mut url = url.to_string();
    for _ in 0..MAX_HOPS {
        match join_once(builder(&url), room, name).await {
            Err(e) => match e.downcast_ref::<Elsewhere>() {
                Some(Elsewhere(next)) => url = next.clone(),
                None => return Err(e),
            },
            joined => return joined,
        }
    }
    anyhow::bail!("join refused: room {room:?} moved more than {MAX_HOPS} times")
}

/// Connects `builder` (its event handlers already set) to the `/rooms` namespace over
/// WebSocket, joins `room` as `name`, and returns the client with the id the server gave.
async fn join_once(
    builder: ClientBuilder,
    room: &str,
    name: &str,
) -> anyhow::Result<(Client, String)> {
    // Emits before the namespace is connected are lost: wait for `connect` first.
    let (connected_tx, connected_rx) = oneshot::channel();
    let connected_tx = Mutex::new(Some(connected_tx));
    let client = builder
        .namespace("/rooms")
        // Straight to WebSocket: long-polling adds a round of latency to every candidate.
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .on(Event::Connect, move |_p: Payload, _c: Client| {
            if let Some(tx) = lock(&connected_tx).take() {
                let _ = tx.send(());
            }
            async {}.boxed()
        })
        .connect()
        .await?;
    tokio::time::timeout(Duration::from_secs(10), connected_rx)
        .await
        .map_err(|_| anyhow::anyhow!("namespace /rooms not connected within 10 s"))?
        .map_err(|_| anyhow::anyhow!("connection closed before /rooms connected"))?;
    let (ack_tx, ack_rx) = oneshot::channel();
    let ack_tx = Mutex::new(Some(ack_tx));
    client
        .emit_with_ack(
            "join",
            json!({ "room": room, "name": name }),
            Duration::from_secs(10),
            move |payload: Payload, _c: Client| {
                if let Some(tx) = lock(&ack_tx).take() {
                    // Acks arrive as the raw JSON argument array.
                    let value = match first_value(payload) {
                        Some(Value::Array(args)) => args.into_iter().next(),
                        other => other,
                    };
                    let _ = tx.send(value);
                }
                async {}.boxed()
            },
        )
        .await?;
    let ack = tokio::time::timeout(Duration::from_secs(10), ack_rx)
        .await
        .map_err(|_| anyhow::anyhow!("join was not acknowledged within 10 s"))?
        .map_err(|_| anyhow::anyhow!("join acknowledgement lost"))?
        .ok_or_else(|| anyhow::anyhow!("empty join acknowledgement"))?;
    if let Some(err) = ack.get("error") {
        let _ = client.disconnect().await;
        if err.get("code").and_then(Value::as_str) == Some("room_elsewhere") {
            if let Some(url) = err.get("url").and_then(Value::as_str) {
                return Err(Elsewhere(url.to_string()).into());
            }
        }
        anyhow::bail!("join refused: {err}");
    }
    let id = ack
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("join acknowledgement without id: {ack}"))?
        .to_string();
    Ok((client, id))
}
