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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, Notify};

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

/// Tells a roster subscription that has stopped delivering from a quiet one. A TCP
/// connection to Redis that a network drops silently (no reset) stays open and delivers
/// nothing, and the node's roster of `/` would stay stale until the kernel gives up on it
/// (many minutes). Every heartbeat's sync returns the roster's version in Redis; a version
/// that Redis had at one heartbeat and the subscription has still not delivered at the next
/// means the subscription is dead: it is dropped and opened again (with a fresh snapshot).
#[derive(Default)]
pub(super) struct RosterWatch {
    /// The newest version the subscription (or a snapshot) delivered.
    seen: AtomicU64,
    /// The version Redis had at the last heartbeat.
    expected: AtomicU64,
    /// Whether a subscription is open (between a snapshot and its end).
    open: AtomicBool,
    stale: Notify,
}

impl RosterWatch {
    fn delivered(&self, version: u64) {
        self.seen.fetch_max(version, Ordering::Relaxed);
    }

    /// A fresh read after subscribing starts the count again: Redis may have restarted empty,
    /// and its versions with it.
    fn restarted(&self, version: u64) {
        self.seen.store(version, Ordering::Relaxed);
        self.expected.store(version, Ordering::Relaxed);
    }

    /// At a heartbeat that read `version` from Redis: whether the previous heartbeat's version
    /// has been delivered since; if not, the subscription is told to start again.
    fn beat(&self, version: u64) -> bool {
        let due = self.expected.swap(version, Ordering::Relaxed);
        let stale = self.open.load(Ordering::Relaxed) && self.seen.load(Ordering::Relaxed) < due;
        if stale {
            // Only a subscription waiting now is told; the next one starts from a snapshot.
            self.stale.notify_waiters();
        }
        stale
    }
}

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
        if let Ok(version) = synced {
            if !leaving && self.watch.beat(version.max(0) as u64) {
                tracing::warn!(node = %self.id, "cluster: the roster subscription delivered nothing for a heartbeat; subscribing again");
            }
        }
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
                    self.watch.open.store(true, Ordering::Relaxed);
                    loop {
                        let msg = tokio::select! {
                            msg = stream.next() => msg,
                            _ = self.watch.stale.notified() => None,
                        };
                        let Some(msg) = msg else { break };
                        let Some(feed) = parse(msg.get_channel_name() == roster, &msg) else {
                            tracing::debug!(
                                channel = msg.get_channel_name(),
                                "cluster: unreadable message ignored"
                            );
                            continue;
                        };
                        if let Feed::Roster { version, .. } = &feed {
                            self.watch.delivered(*version);
                        }
                        if tx.send(feed).await.is_err() {
                            return;
                        }
                    }
                    self.watch.open.store(false, Ordering::Relaxed);
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
        self.watch.restarted(wire.version);
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

#[cfg(test)]
mod tests {
    use super::RosterWatch;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_version_still_undelivered_a_heartbeat_later_marks_the_subscription_stale() {
        let watch = RosterWatch::default();
        watch.open.store(true, Ordering::Relaxed);
        watch.delivered(3);
        assert!(!watch.beat(3), "nothing was due yet");
        assert!(
            !watch.beat(5),
            "version 3 was delivered; 5 is new at this beat"
        );
        assert!(
            watch.beat(5),
            "5 was in Redis a heartbeat ago and never arrived"
        );
        watch.delivered(5);
        assert!(!watch.beat(5));
        // Redis restarted empty: its versions start again from the fresh read.
        watch.restarted(1);
        assert!(!watch.beat(1));
        assert!(!watch.beat(2));
        assert!(watch.beat(2), "2 never arrived");
        // While no subscription is open (Redis away, subscribing again) nothing is stale.
        watch.open.store(false, Ordering::Relaxed);
        assert!(!watch.beat(9));
        assert!(!watch.beat(9));
    }
}
