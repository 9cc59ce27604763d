//! Several nodes behind one URL (docs/cluster.md): Redis knows the live nodes and which node
//! hosts each room; a room lives on one node.
//!
//! - Each node writes its entry (URL, load) every `cluster.heartbeat_ms`, with a ttl of
//!   `cluster.node_ttl_ms`, and in the same step renews the claims of the rooms it hosts.
//! - The first join of a room, on whichever node it arrives, claims the room atomically for the
//!   least-loaded live node ([`scripts::claim`]). A joiner on another node is told where the
//!   room is ([`Placement::Elsewhere`]) and connects there: its media and signaling then go to
//!   the host directly, and nothing of a hosted room depends on Redis any more.
//! - A room this node hosts is placed here without asking Redis, so a Redis outage stops only
//!   joins of rooms not hosted here; the next heartbeat that reaches Redis re-registers the
//!   node and takes its rooms' claims again.
//!
//! Knows Redis and nothing of Socket.IO or RTP: signaling asks [`Cluster::place`] before a
//! join and calls [`Cluster::release`] when a room ends.

mod scripts;
mod tutorial;

pub use tutorial::{Feed, LocalMembers, Member};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::metrics::Metrics;

/// Every key of the cluster starts with this, so one Redis can serve other things too.
pub const PREFIX: &str = "sfu-lite:";

/// A Redis call that takes longer than this counts as Redis being unreachable: a join waits
/// at most this long for its placement.
const REDIS_TIMEOUT: Duration = Duration::from_millis(1000);

/// The least a claim lasts without renewal (see [`Cluster::claim_ttl_ms`]).
const CLAIM_TTL_MS: u64 = 30_000;

/// How long a room placed on another node counts in that node's load before its first joiner
/// arrives there (one that never does stops counting then).
const PENDING_MS: u64 = 10_000;

/// Where a room's joiner belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Here,
    /// Hosted by node `node`, whose signaling is at `url`.
    Elsewhere {
        node: String,
        url: String,
    },
}

/// Joins of rooms not hosted here need Redis, and it did not answer.
#[derive(Debug, thiserror::Error)]
#[error("the cluster registry (Redis) is unreachable: {0}")]
pub struct Unavailable(String);

/// A node's entry in Redis, as `GET /api/v1/cluster` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeEntry {
    pub id: String,
    pub url: String,
    pub participants: i64,
    pub rooms: i64,
    /// RTP packets forwarded per second over the last heartbeat.
    pub packets_per_second: u64,
    /// Process CPU over the last heartbeat, in cores (1.0 = one core busy).
    pub cpu: f64,
}

/// The rooms this node hosts now (the room table's names), read at every heartbeat.
pub type HostedRooms = Box<dyn Fn() -> Vec<String> + Send + Sync>;

pub struct Cluster {
    id: String,
    url: String,
    heartbeat: Duration,
    node_ttl: Duration,
    redis: ConnectionManager,
    metrics: Arc<Metrics>,
    client: redis::Client,
    hosted: OnceLock<HostedRooms>,
    /// Set when `/` spans the cluster (see [`Cluster::tutorial_feed`]).
    tutorial: OnceLock<LocalMembers>,
    /// Whether the roster subscription still delivers (see [`tutorial::RosterWatch`]).
    watch: tutorial::RosterWatch,
    /// Whether the last call to Redis succeeded (logged on change, exported as a gauge).
    up: AtomicBool,
    /// Set by [`Cluster::shutdown`]: calls still finishing (a release) no longer touch the gauge.
    closed: AtomicBool,
    stop: Notify,
    /// The heartbeat, then the roster subscription if any.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Cluster {
    /// The cluster of `config`, or `None` for a single node. Connects lazily: a node starts
    /// while Redis is away and registers once it answers.
    pub fn new(config: &ClusterConfig, metrics: Arc<Metrics>) -> anyhow::Result<Option<Arc<Self>>> {
        if !config.enabled() {
            return Ok(None);
        }
        let client = redis::Client::open(config.redis_url.0.as_str())
            // The URL may hold a password: the error names neither.
            .map_err(|e| anyhow::anyhow!("cluster.redis_url: {}", describe(&e)))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            // Each command tries a reconnection once; the heartbeat keeps trying.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let redis = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| anyhow::anyhow!("cluster.redis_url: {}", describe(&e)))?;
        let id = match config.node_id.trim() {
            "" => format!("node-{:08x}", rand::random::<u32>()),
            id => id.to_string(),
        };
        Ok(Some(Arc::new(Self {
            id,
            url: config.url.trim_end_matches('/').to_string(),
            heartbeat: Duration::from_millis(config.heartbeat_ms),
            node_ttl: Duration::from_millis(config.node_ttl_ms),
            redis,
            client,
            metrics,
            hosted: OnceLock::new(),
            tutorial: OnceLock::new(),
            watch: Default::default(),
            up: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stop: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        })))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Starts the heartbeat; `hosted` names the rooms this node hosts at each beat.
    pub fn start(self: &Arc<Self>, hosted: HostedRooms) {
        if self.hosted.set(hosted).is_err() {
            return;
        }
        let me = self.clone();
        let task = tokio::spawn(async move { me.run().await });
        crate::sync::lock(&self.tasks).push(task);
    }

    /// Where a joiner of `room` belongs. `hosted_here`: the room exists on this node, which
    /// then keeps it without asking Redis.
    pub async fn place(&self, room: &str, hosted_here: bool) -> Result<Placement, Unavailable> {
        if hosted_here {
            return Ok(Placement::Here);
        }
        let mut redis = self.redis.clone();
        let claimed: Option<(String, String)> = scripts::claim()
            .key(room_key(room))
            .key(load_key())
            .arg(self.claim_ttl_ms())
            .arg(&self.id)
            .arg(node_key(""))
            .arg(pending_key(""))
            .arg(room)
            .arg(PENDING_MS)
            .invoke_async(&mut redis)
            .await
            .map_err(|e| self.failed(e))?;
        self.succeeded();
        let Some((owner, entry)) = claimed else {
            return Err(Unavailable("no live node is registered yet".into()));
        };
        if owner == self.id {
            return Ok(Placement::Here);
        }
        let entry: NodeEntry = serde_json::from_str(&entry)
            .map_err(|e| Unavailable(format!("node {owner} has an unreadable entry: {e}")))?;
        Ok(Placement::Elsewhere {
            node: owner,
            url: entry.url,
        })
    }

    /// Frees the claim of `room`, which ended here (in the background: the last leave does not
    /// wait for Redis). A claim that cannot be freed expires by itself.
    pub fn release(self: &Arc<Self>, room: &str) {
        let me = self.clone();
        let key = room_key(room);
        tokio::spawn(async move {
            let mut redis = me.redis.clone();
            let freed: redis::RedisResult<i64> = scripts::release()
                .key(key)
                .arg(&me.id)
                .invoke_async(&mut redis)
                .await;
            if let Err(e) = freed {
                me.failed(e);
            }
        });
    }

    /// The live nodes' entries, for the admin API.
    pub async fn nodes(&self) -> Result<Vec<NodeEntry>, Unavailable> {
        let mut redis = self.redis.clone();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(load_key())
            .arg(0)
            .arg(-1)
            .query_async(&mut redis)
            .await
            .map_err(|e| self.failed(e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| node_key(id)).collect();
        let entries: Vec<Option<String>> = redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut redis)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(entries
            .into_iter()
            .flatten()
            .filter_map(|e| serde_json::from_str(&e).ok())
            .collect())
    }

    /// Whether [`Cluster::shutdown`] has started.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Stops the heartbeat and leaves the registry: this node's entry and its rooms' claims are
    /// deleted, so its rooms can be claimed again at once (their members were told to go).
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // First, not last: the server's grace period may cut this function short while Redis
        // is slow (its drain is under a timeout). See `succeeded` for a call finishing now.
        self.metrics.cluster_redis_up.store(0, Ordering::SeqCst);
        self.stop.notify_one();
        let tasks = std::mem::take(&mut *crate::sync::lock(&self.tasks));
        // The subscription has nothing to finish; the heartbeat ends at `stop`. All aborted
        // before any is awaited, so a caller that gives up on this function leaves none running.
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        self.tutorial_sync(true).await;
        let script = scripts::leave();
        let mut invocation = script.key(node_key(&self.id));
        invocation.key(load_key()).key(pending_key(&self.id));
        for room in self.hosted_rooms() {
            invocation.key(room_key(&room));
        }
        invocation.arg(&self.id);
        let mut redis = self.redis.clone();
        let left: redis::RedisResult<i64> = invocation.invoke_async(&mut redis).await;
        if let Err(e) = left {
            tracing::warn!(node = %self.id, error = %describe(&e), "cluster: could not leave the registry; its entry expires by itself");
        }
    }

    async fn run(self: Arc<Self>) {
        let mut last = Sample::now(&self.metrics);
        loop {
            let next = Sample::now(&self.metrics);
            let entry = self.entry(&last, &next);
            last = next;
            self.beat(&entry).await;
            self.tutorial_sync(false).await;
            tokio::select! {
                () = self.stop.notified() => return,
                () = tokio::time::sleep(self.heartbeat) => {}
            }
        }
    }

    async fn beat(&self, entry: &NodeEntry) {
        let json = serde_json::to_string(entry).unwrap_or_default();
        let script = scripts::beat();
        let mut invocation = script.key(node_key(&self.id));
        invocation.key(load_key()).key(pending_key(&self.id));
        for room in self.hosted_rooms() {
            invocation.key(room_key(&room));
        }
        invocation
            .arg(self.node_ttl.as_millis() as u64)
            .arg(self.claim_ttl_ms())
            .arg(&self.id)
            .arg(json)
            .arg(entry.participants + entry.rooms);
        let mut redis = self.redis.clone();
        let taken: redis::RedisResult<Vec<String>> = invocation.invoke_async(&mut redis).await;
        match taken {
            Ok(taken) => {
                self.succeeded();
                for key in taken {
                    let room = key.strip_prefix(&room_key("")).unwrap_or(&key);
                    tracing::warn!(node = %self.id, room, "cluster: another node claimed a room hosted here (Redis was away); both keep their members");
                }
            }
            Err(e) => {
                self.failed(e);
            }
        }
    }

    fn entry(&self, last: &Sample, next: &Sample) -> NodeEntry {
        let secs = next.at.duration_since(last.at).as_secs_f64();
        let per_second = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        NodeEntry {
            id: self.id.clone(),
            url: self.url.clone(),
            participants: self.metrics.participants.load(Ordering::Relaxed),
            rooms: self.metrics.rooms.load(Ordering::Relaxed),
            packets_per_second: per_second(next.packets.saturating_sub(last.packets)) as u64,
            cpu: per_second(1) * (next.cpu_secs - last.cpu_secs).max(0.0),
        }
    }

    fn hosted_rooms(&self) -> Vec<String> {
        self.hosted.get().map(|h| h()).unwrap_or_default()
    }

    /// How long a claim lasts unrenewed. Its owner's death does not wait for it (a claim whose
    /// owner has no entry is free), so it can be long: long enough for a joiner sent to a busy
    /// node to get there before the claim it was sent for is gone.
    fn claim_ttl_ms(&self) -> u64 {
        (self.node_ttl.as_millis() as u64).max(CLAIM_TTL_MS)
    }

    fn succeeded(&self) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(node = %self.id, url = %self.url, "cluster: registered in Redis");
            self.metrics.cluster_redis_up.store(1, Ordering::SeqCst);
            // A shutdown between the check above and this store has already zeroed the
            // gauge: it must stay zero (both sides SeqCst, so one of them sees the other).
            if self.closed.load(Ordering::SeqCst) {
                self.metrics.cluster_redis_up.store(0, Ordering::SeqCst);
            }
        }
    }

    fn failed(&self, e: redis::RedisError) -> Unavailable {
        if !self.closed.load(Ordering::Relaxed) && self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(node = %self.id, error = %describe(&e), "cluster: Redis unreachable; rooms hosted here go on, other joins are refused");
            self.metrics.cluster_redis_up.store(0, Ordering::Relaxed);
        }
        Unavailable(describe(&e))
    }
}

/// What the heartbeat compares between two beats.
struct Sample {
    at: std::time::Instant,
    packets: u64,
    cpu_secs: f64,
}

impl Sample {
    fn now(metrics: &Metrics) -> Self {
        Self {
            at: std::time::Instant::now(),
            packets: metrics.forwarded_packets.load(Ordering::Relaxed),
            cpu_secs: crate::procstat::sample_self().map_or(0.0, |s| s.cpu.as_secs_f64()),
        }
    }
}

/// A Redis error by its kind only: its text may name the server, never mind a password.
fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
        "connection failed".into()
    } else {
        format!("{:?}", e.kind())
    }
}

fn node_key(id: &str) -> String {
    format!("{PREFIX}node:{id}")
}

fn room_key(room: &str) -> String {
    format!("{PREFIX}room:{room}")
}

fn pending_key(id: &str) -> String {
    format!("{PREFIX}pending:{id}")
}

fn load_key() -> String {
    format!("{PREFIX}load")
}
