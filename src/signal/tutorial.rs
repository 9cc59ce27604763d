//! The tutorial's protocol on the default namespace `/`, kept exactly: `ready(id, persons)` to a
//! new socket and `change(persons)` to the others, direct `message`s relayed with every field
//! the sender chose and `from` and `time` set, `bye`, and `ipaddr` when the config allows it.
//! `docs/protocol.md` lists, event by event, how this compares with the tutorial's server.
//!
//! The roster and every `ready`/`change` are produced under one lock, so each socket sees the
//! rosters in the order they changed. Ids are public ids ([`Conn::id`]); the roster maps them
//! to sockets for the relay. Every connect sends the whole roster to everyone, O(N²) bytes, so
//! `/` has its own cap, `signaling.max_tutorial_sockets`.
//!
//! On a cluster, the roster is the cluster's ([`super::tutorial_shared`]): the session is the
//! same, only entering, leaving and finding a message's target go through Redis.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde_json::value::RawValue;
use serde_json::Value as Json;
use socketioxide::extract::{AckSender, SocketRef};
use tokio::sync::Mutex;

use super::protocol::{clock, nothing, DirectMessage, ErrorCode, Person, SignalError};
use super::session::{json_args, Conn, Ctx, Inbound, Seats, Service};
use super::tutorial_shared::{Route, SharedRoster};
use crate::cluster::Cluster;

/// Hands out `seq`: always the smallest positive integer no connected socket holds.
#[derive(Debug)]
pub struct SeqPool {
    next: u32,
    freed: BinaryHeap<Reverse<u32>>,
}

impl Default for SeqPool {
    fn default() -> Self {
        Self {
            next: 1,
            freed: BinaryHeap::new(),
        }
    }
}

impl SeqPool {
    pub fn take(&mut self) -> u32 {
        // Every freed number is below `next`, so the heap's minimum, if any, is the smallest.
        match self.freed.pop() {
            Some(Reverse(seq)) => seq,
            None => {
                self.next += 1;
                self.next - 1
            }
        }
    }

    pub fn give_back(&mut self, seq: u32) {
        self.freed.push(Reverse(seq));
    }
}

#[derive(Default)]
struct Roster {
    /// In connection order, as the tutorial lists them.
    persons: Vec<Person>,
    /// Public id → socket.
    sockets: HashMap<String, SocketRef>,
    seqs: SeqPool,
}

pub(crate) struct Tutorial {
    ctx: Arc<Ctx>,
    roster: Mutex<Roster>,
    /// Set on a cluster: then `roster` stays empty.
    shared: Option<Arc<SharedRoster>>,
    seats: Seats,
}

pub(crate) enum TutorialEvent {
    Message(DirectMessage),
    Bye,
    Ipaddr,
}

impl Tutorial {
    pub fn new(ctx: Arc<Ctx>, cluster: Option<Arc<Cluster>>) -> Arc<Self> {
        let seats = Seats::new(
            "/",
            "signaling.max_tutorial_sockets",
            ctx.config.signaling.max_tutorial_sockets,
        );
        Arc::new(Self {
            ctx,
            roster: Mutex::new(Roster::default()),
            shared: cluster.map(SharedRoster::start),
            seats,
        })
    }

    async fn session(self: Arc<Self>, mut conn: Conn<TutorialEvent>) {
        if !conn.started().await {
            return;
        }
        let id = conn.id();
        let socket = conn.socket.clone();
        if !self.enter(&conn, &id).await {
            return;
        }
        while let Some(Inbound { event, ack }) = conn.next().await {
            match event {
                TutorialEvent::Message(m) => self.relay(&conn, &id, m, ack).await,
                TutorialEvent::Bye => {
                    Conn::<TutorialEvent>::ok(ack);
                    let _ = socket.clone().disconnect();
                }
                TutorialEvent::Ipaddr => self.ipaddr(&conn, ack),
            }
        }
        self.exit(&id, &socket).await;
        tracing::debug!(id = %id, "tutorial socket gone");
    }

    /// Puts the socket on the roster: `ready` to it, `change` to the others. False when it
    /// cannot be (the cluster's Redis is away): it was told why and disconnected.
    async fn enter(&self, conn: &Conn<TutorialEvent>, id: &str) -> bool {
        let socket = &conn.socket;
        if let Some(shared) = &self.shared {
            let Err(e) = shared.enter(id, socket.clone()).await else {
                return true;
            };
            tracing::info!(id = %id, error = %e, "tutorial socket refused: no cluster roster");
            let err = SignalError::new(ErrorCode::ClusterUnavailable, "", e.to_string());
            conn.answer(err, None);
            let _ = socket.clone().disconnect();
            return false;
        }
        let mut roster = self.roster.lock().await;
        let seq = roster.seqs.take();
        roster.persons.push(Person {
            id: id.to_string(),
            seq,
        });
        roster.sockets.insert(id.to_string(), socket.clone());
        tracing::debug!(id = %id, seq, "tutorial socket ready");
        let _ = socket.emit("ready", &(id, &roster.persons));
        let _ = socket.broadcast().emit("change", &roster.persons).await;
        true
    }

    async fn exit(&self, id: &str, socket: &SocketRef) {
        if let Some(shared) = &self.shared {
            return shared.exit(id).await;
        }
        let mut roster = self.roster.lock().await;
        if let Some(pos) = roster.persons.iter().position(|p| p.id == id) {
            let person = roster.persons.remove(pos);
            roster.seqs.give_back(person.seq);
        }
        roster.sockets.remove(id);
        let _ = socket.broadcast().emit("change", &roster.persons).await;
    }

    async fn relay(
        &self,
        conn: &Conn<TutorialEvent>,
        from: &str,
        m: DirectMessage,
        ack: Option<AckSender>,
    ) {
        // The tutorial's `socket.to(to)` never includes the sender: a message to oneself
        // reaches nobody, and is no error there either.
        if m.to == from {
            return Conn::<TutorialEvent>::ok(ack);
        }
        let unknown = || {
            SignalError::new(
                ErrorCode::UnknownPeer,
                "message",
                format!("no connected socket has id {:?}", m.to),
            )
        };
        let route = match &self.shared {
            Some(shared) => shared.route(&m.to),
            None => match self.roster.lock().await.sockets.get(&m.to) {
                Some(target) => Route::Here(target.clone()),
                None => Route::Unknown,
            },
        };
        let time = clock();
        let relayed = m.relayed(from, &time);
        match route {
            Route::Here(target) => {
                let _ = target.emit("message", &relayed);
            }
            Route::Node(node) => {
                let Some(shared) = &self.shared else { return };
                let body = serde_json::value::to_raw_value(&relayed);
                let sent = match &body {
                    Ok(body) => shared.send(&node, &m.to, body).await,
                    Err(_) => Ok(()),
                };
                if let Err(e) = sent {
                    let err =
                        SignalError::new(ErrorCode::ClusterUnavailable, "message", e.to_string());
                    return conn.answer(err, ack);
                }
            }
            Route::Unknown => return conn.refuse(unknown(), ack),
        }
        Conn::<TutorialEvent>::ok(ack);
    }

    fn ipaddr(&self, conn: &Conn<TutorialEvent>, ack: Option<AckSender>) {
        if !self.ctx.config.signaling.announce_host_ips {
            let err = SignalError::new(
                ErrorCode::NotAllowed,
                "ipaddr",
                "this server does not announce its addresses (signaling.announce_host_ips)",
            );
            return conn.refuse(err, ack);
        }
        let addrs = if_addrs::get_if_addrs().unwrap_or_default();
        for iface in addrs {
            if let IpAddr::V4(ip) = iface.ip() {
                if !ip.is_loopback() {
                    let _ = conn.socket.emit("ipaddr", &ip.to_string());
                }
            }
        }
        Conn::<TutorialEvent>::ok(ack);
    }
}

impl Service for Tutorial {
    type Event = TutorialEvent;

    /// `message` is read from the wire text, so its fields are relayed as sent.
    fn decode(event: &str, text: &str) -> Result<TutorialEvent, SignalError> {
        if event != "message" {
            return Self::parse(event, json_args(event, text)?);
        }
        let mut args = serde_json::from_str::<Vec<&RawValue>>(text)
            .ok()
            .filter(|args| !args.is_empty())
            .ok_or_else(|| SignalError::bad_request(event, "payload is not a JSON event array"))?;
        args.remove(0);
        DirectMessage::from_args(event, &args).map(TutorialEvent::Message)
    }

    fn parse(event: &str, args: Vec<Json>) -> Result<TutorialEvent, SignalError> {
        Ok(match event {
            "message" => {
                let raw = args
                    .iter()
                    .map(serde_json::value::to_raw_value)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| SignalError::bad_request(event, e.to_string()))?;
                let raw: Vec<&RawValue> = raw.iter().map(|r| &**r).collect();
                TutorialEvent::Message(DirectMessage::from_args(event, &raw)?)
            }
            "bye" => nothing(event, args).map(|()| TutorialEvent::Bye)?,
            "ipaddr" => nothing(event, args).map(|()| TutorialEvent::Ipaddr)?,
            _ => {
                return Err(SignalError::new(
                    ErrorCode::UnknownEvent,
                    event,
                    "no such event on namespace \"/\" (message, bye, ipaddr)",
                ))
            }
        })
    }

    fn run(self: Arc<Self>, conn: Conn<TutorialEvent>) -> BoxFuture<'static, ()> {
        self.session(conn).boxed()
    }

    fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    fn seats(&self) -> Option<&Seats> {
        Some(&self.seats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_smallest_free_and_holds_thousands() {
        let mut pool = SeqPool::default();
        let taken: Vec<u32> = (0..5000).map(|_| pool.take()).collect();
        assert_eq!(taken, (1..=5000).collect::<Vec<_>>());
        pool.give_back(4000);
        pool.give_back(7);
        pool.give_back(300);
        assert_eq!(pool.take(), 7);
        assert_eq!(pool.take(), 300);
        assert_eq!(pool.take(), 4000);
        assert_eq!(pool.take(), 5001);
    }
}
