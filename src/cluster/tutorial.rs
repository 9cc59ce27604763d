//! The tutorial's namespace `/` across the cluster: one roster in Redis, one `seq` series, and
//! direct messages to a socket on any node (docs/cluster.md, "The tutorial's roster").
//!
//! Every change of the roster is one script that changes it and publishes the whole roster on
//! one channel, so every node receives the changes in the order they happened and each socket
//! sees the rosters in that order, as on one node. A message for a socket on another node is
//! published on that node's own channel. A node whose members are lost (it died, or Redis
//! restarted empty) is mended at the heartbeat: each node states its members, and the members
//! of dead nodes are dropped ([`scripts::tutorial_sync`]).
//!
//! Knows Redis, nothing of Socket.IO: signaling turns [`Feed`] into `ready`, `change` and
//! `message` events.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::{describe, node_key, scripts, Cluster, Unavailable, PREFIX, REDIS_TIMEOUT};

/// One socket of the cluster's roster.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub seq: u32,
    /// The node the socket is connected to.
    pub node: String,
}

/// What the roster channel and this node's channel deliver, in order.
#[derive(Debug)]
pub enum Feed {
    /// The roster after a change (`ready`: the socket whose arrival it was), or, when
    /// `fresh`, as read after (re)subscribing: changes before it may have been missed.
    Roster {
        version: u64,
        ready: Option<String>,
        members: Vec<Member>,
        fresh: bool,
    },
    /// A direct message for `to`, a socket on this node: the relayed body.
    Message { to: String, body: Box<RawValue> },
}

#[derive(Deserialize)]
struct RosterWire {
    version: u64,
    ready: Option<String>,
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct MessageWire {
    to: String,
    body: Box<RawValue>,
}

/// The sockets of `/` on this node, read at every heartbeat: the count of changes made so
/// far, and their ids. Both are read at once (under the caller's lock), so a heartbeat never
/// undoes a change Redis saw after it.
pub type LocalMembers = Box<dyn Fn() -> (u64, Vec<String>) + Send + Sync>;

/// How many feed items may wait for signaling before the subscriber waits too.
const FEED_QUEUE: usize = 256;

/// The pause between attempts to subscribe while Redis is away.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

impl Cluster {
    /// Starts receiving the roster and this node's messages. Called once, when `/` spans the
    /// cluster; the feed ends at shutdown.
    pub fn tutorial_feed(self: &Arc<Self>, members: LocalMembers) -> mpsc::Receiver<Feed> {
        let (tx, rx) = mpsc::channel(FEED_QUEUE);
        if self.tutorial.set(members).is_ok() {
            let me = self.clone();
            let task = tokio::spawn(async move { me.subscribe(tx).await });
            crate::sync::lock(&self.tasks).push(task);
        }
        rx
    }

    /// Adds socket `id` of this node to the roster; `ops`: this node's changes so far,
    /// counting this one. Its `ready` comes through the feed.
    pub async fn tutorial_join(&self, id: &str, ops: u64) -> Result<(), Unavailable> {
        self.tutorial_call(scripts::tutorial_join(), id, ops).await
    }

    /// Takes socket `id` off the roster. Should Redis not answer, the next heartbeat that
    /// reaches it does.
    pub async fn tutorial_leave(&self, id: &str, ops: u64) {
        let _ = self.tutorial_call(scripts::tutorial_leave(), id, ops).await;
    }

    /// Hands a relayed message to socket `to` on node `node`.
    pub async fn tutorial_send(
        &self,
        node: &str,
        to: &str,
        body: &RawValue,
    ) -> Result<(), Unavailable> {
        #[derive(serde::Serialize)]
        struct Wire<'a> {
            to: &'a str,
            body: &'a RawValue,
        }
        let json = serde_json::to_string(&Wire { to, body }).unwrap_or_default();
        let mut redis = self.redis.clone();
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(inbox_channel(node))
            .arg(json)
            .query_async(&mut redis)
            .await;
        sent.map(drop).map_err(|e| self.failed(e))
    }

    async fn tutorial_call(
        &self,
        script: &redis::Script,
        id: &str,
        ops: u64,
    ) -> Result<(), Unavailable> {
        let mut redis = self.redis.clone();
        let done: redis::RedisResult<i64> = script
            .arg(PREFIX)
            .arg(&self.id)
            .arg(ops)
            .arg(id)
            .invoke_async(&mut redis)
            .await;
        done.map(drop).map_err(|e| self.failed(e))?;
        self.succeeded();
        Ok(())
    }

    /// At each heartbeat: states this node's members (all of them, or none when leaving) and
    /// drops those of dead nodes.
    pub(super) async fn tutorial_sync(&self, leaving: bool) {
        let Some(members) = self.tutorial.get() else {
            return;
        };
        let (ops, ids) = members();
        let script = scripts::tutorial_sync();
        let mut invocation = script.arg(PREFIX);
        invocation.arg(&self.id).arg(ops).arg(node_key(""));
        if !leaving {
            invocation.arg(ids);
        }
        let mut redis = self.redis.clone();
        let synced: redis::RedisResult<i64> = invocation.invoke_async(&mut redis).await;
        if let Err(e) = synced {
            if leaving {
                tracing::warn!(node = %self.id, error = %describe(&e), "cluster: could not take this node's sockets off the roster of /; the other nodes drop them once its entry expires");
            } else {
                self.failed(e);
            }
        }
    }

    /// Subscribes to the roster and this node's inbox, again whenever the connection is lost;
    /// each time, the roster is read afresh after subscribing, so nothing is missed for good.
    async fn subscribe(self: Arc<Self>, tx: mpsc::Sender<Feed>) {
        let roster = roster_channel();
        let inbox = inbox_channel(&self.id);
        loop {
            if let Some(stream) = self.open(&roster, &inbox).await {
                if let Some(fresh) = self.snapshot().await {
                    if tx.send(fresh).await.is_err() {
                        return;
                    }
                    let mut stream = stream;
                    while let Some(msg) = stream.next().await {
                        let Some(feed) = parse(msg.get_channel_name() == roster, &msg) else {
                            tracing::debug!(
                                channel = msg.get_channel_name(),
                                "cluster: unreadable message ignored"
                            );
                            continue;
                        };
                        if tx.send(feed).await.is_err() {
                            return;
                        }
                    }
                    tracing::debug!(node = %self.id, "cluster: roster subscription lost");
                }
            }
            if self.closed.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(RESUBSCRIBE).await;
        }
    }

    async fn open(&self, roster: &str, inbox: &str) -> Option<redis::aio::PubSubStream> {
        let opened = tokio::time::timeout(REDIS_TIMEOUT, async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&[roster, inbox]).await?;
            redis::RedisResult::Ok(pubsub)
        })
        .await;
        match opened {
            Ok(Ok(pubsub)) => Some(pubsub.into_on_message()),
            Ok(Err(e)) => {
                self.failed(e);
                None
            }
            Err(_) => None,
        }
    }

    async fn snapshot(&self) -> Option<Feed> {
        let mut redis = self.redis.clone();
        let read: redis::RedisResult<String> = scripts::tutorial_roster()
            .arg(PREFIX)
            .invoke_async(&mut redis)
            .await;
        let text = read.map_err(|e| self.failed(e)).ok()?;
        let wire: RosterWire = serde_json::from_str(&text).ok()?;
        Some(Feed::Roster {
            version: wire.version,
            ready: None,
            members: wire.members,
            fresh: true,
        })
    }
}

fn parse(roster: bool, msg: &redis::Msg) -> Option<Feed> {
    let bytes = msg.get_payload_bytes();
    if roster {
        let wire: RosterWire = serde_json::from_slice(bytes).ok()?;
        return Some(Feed::Roster {
            version: wire.version,
            ready: wire.ready,
            members: wire.members,
            fresh: false,
        });
    }
    let wire: MessageWire = serde_json::from_slice(bytes).ok()?;
    Some(Feed::Message {
        to: wire.to,
        body: wire.body,
    })
}

/// Where every roster change is published (by the scripts, see `scripts::ROSTER_LUA`).
fn roster_channel() -> String {
    format!("{PREFIX}tutorial:roster")
}

/// Where messages for the sockets of node `node` are published.
fn inbox_channel(node: &str) -> String {
    format!("{PREFIX}tutorial:to:{node}")
}
