//! Namespace `/` when it spans the cluster: the roster lives in Redis ([`crate::cluster`]),
//! and this node turns its feed into the tutorial's events for the sockets connected here.
//!
//! A socket gets `ready` from the first roster that has it as the arrival (or, after the
//! subscription was lost, from the first roster read afresh that has it), and `change` from
//! every roster after; the feed delivers rosters in the order Redis made them, so every socket
//! of the cluster sees the same sequence. Messages for sockets on other nodes go through Redis;
//! those for sockets here are emitted directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;

use super::protocol::Person;
use crate::cluster::{Cluster, Feed, Unavailable};
use crate::sync::lock;

pub(super) struct SharedRoster {
    cluster: Arc<Cluster>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// This node's sockets of `/`.
    local: HashMap<String, Local>,
    /// Changes to `local` so far (see [`crate::cluster::LocalMembers`]).
    ops: u64,
    /// The last roster applied: its version, members, and each member's node.
    version: u64,
    persons: Vec<Person>,
    node_of: HashMap<String, String>,
}

struct Local {
    socket: SocketRef,
    /// It got its `ready`; until then it gets no `change`, as on one node.
    ready: bool,
}

/// Where a direct message goes.
pub(super) enum Route {
    Here(SocketRef),
    Node(String),
    Unknown,
}

impl SharedRoster {
    /// Subscribes to the cluster's roster; the feed ends at the cluster's shutdown.
    pub fn start(cluster: Arc<Cluster>) -> Arc<Self> {
        let roster = Arc::new(Self {
            cluster: cluster.clone(),
            state: Mutex::new(State::default()),
        });
        // Weak: the cluster keeps this closure, and the roster keeps the cluster.
        let weak: Weak<Self> = Arc::downgrade(&roster);
        let mut feed = cluster.tutorial_feed(Box::new(move || {
            weak.upgrade().map(|r| r.members()).unwrap_or_default()
        }));
        let me = roster.clone();
        tokio::spawn(async move {
            while let Some(item) = feed.recv().await {
                me.apply(item);
            }
        });
        roster
    }

    /// Adds a socket of this node to the cluster's roster.
    pub async fn enter(&self, id: &str, socket: SocketRef) -> Result<(), Unavailable> {
        let ops = {
            let mut state = lock(&self.state);
            state.local.insert(
                id.to_string(),
                Local {
                    socket,
                    ready: false,
                },
            );
            state.bump()
        };
        let joined = self.cluster.tutorial_join(id, ops).await;
        if joined.is_err() {
            // Redis may have seen it or not: the next heartbeat states the truth.
            let mut state = lock(&self.state);
            state.local.remove(id);
            state.bump();
        }
        joined
    }

    pub async fn exit(&self, id: &str) {
        let ops = {
            let mut state = lock(&self.state);
            state.local.remove(id);
            state.bump()
        };
        self.cluster.tutorial_leave(id, ops).await;
    }

    pub fn route(&self, to: &str) -> Route {
        let state = lock(&self.state);
        if let Some(local) = state.local.get(to) {
            return Route::Here(local.socket.clone());
        }
        match state.node_of.get(to) {
            Some(node) => Route::Node(node.clone()),
            None => Route::Unknown,
        }
    }

    pub async fn send(&self, node: &str, to: &str, body: &RawValue) -> Result<(), Unavailable> {
        self.cluster.tutorial_send(node, to, body).await
    }

    fn members(&self) -> (u64, Vec<String>) {
        let state = lock(&self.state);
        (state.ops, state.local.keys().cloned().collect())
    }

    fn apply(&self, item: Feed) {
        let mut state = lock(&self.state);
        match item {
            Feed::Roster {
                version,
                ready,
                members,
                fresh,
            } => {
                // A fresh read restarts the series (Redis may have restarted empty).
                if !fresh && version <= state.version {
                    return;
                }
                state.version = version;
                state.node_of = members
                    .iter()
                    .map(|m| (m.id.clone(), m.node.clone()))
                    .collect();
                state.persons = members
                    .into_iter()
                    .map(|m| Person {
                        id: m.id,
                        seq: m.seq,
                    })
                    .collect();
                let State {
                    local,
                    persons,
                    node_of,
                    ..
                } = &mut *state;
                for (id, socket) in local.iter_mut() {
                    if socket.ready {
                        let _ = socket.socket.emit("change", &persons);
                    } else if ready.as_deref() == Some(id) || (fresh && node_of.contains_key(id)) {
                        socket.ready = true;
                        let _ = socket.socket.emit("ready", &(id, &persons));
                    }
                }
            }
            Feed::Message { to, body } => {
                if let Some(local) = state.local.get(&to) {
                    let _ = local.socket.emit("message", &body);
                }
            }
        }
    }
}

impl State {
    fn bump(&mut self) -> u64 {
        self.ops += 1;
        self.ops
    }
}
