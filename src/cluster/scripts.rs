//! The Lua scripts that make each step on the registry atomic. Redis runs a script alone, so
//! two nodes racing for one room cannot both win: the first `claim` sets the owner and the
//! second reads it.
//!
//! Keys (all under [`super::PREFIX`]): `node:<id>` holds a node's entry (JSON, expires after
//! `cluster.node_ttl_ms`), the sorted set `load` scores each node by its participants and
//! rooms, `room:<name>` holds the id of the node hosting that room (expires unless renewed),
//! and the sorted set `pending:<id>` holds the rooms placed on a node whose first joiner has
//! not arrived there yet (scored by when they stop counting). Scripts
//! reach `node:<id>` keys they compute themselves, which a single Redis (or a primary with
//! replicas) allows and Redis Cluster does not: docs/cluster.md says so.

use redis::Script;

/// KEYS: room key, load set. ARGV: claim ttl (ms), this node's id, node key prefix, pending
/// key prefix, room name, how long a pending room counts (ms).
///
/// Returns `{owner, owner's entry}`. A live owner is kept (its claim refreshed when it is this
/// node, and the room no longer pending there: its joiner arrived). Otherwise the room goes to
/// the least-loaded live node, this one on a tie (no hop for the joiner). That node's score
/// goes up by one at once, and the room is pending there until its joiner arrives, which the
/// node's heartbeats count: joins that follow spread to the others even before the first
/// joiners arrive. Dead nodes met on the way leave the load set. Returns nothing when no node
/// is alive (this one has not registered yet).
pub fn claim() -> Script {
    Script::new(
        r#"
local room, load = KEYS[1], KEYS[2]
local ttl, me, prefix, pending, name, pending_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local owner = redis.call('GET', room)
if owner then
  local entry = redis.call('GET', prefix .. owner)
  if entry then
    if owner == me then
      redis.call('PEXPIRE', room, ttl)
      redis.call('ZREM', pending .. me, name)
    end
    return {owner, entry}
  end
  redis.call('ZREM', load, owner)
end
local best, best_entry, best_score = nil, nil, nil
local mine = redis.call('ZSCORE', load, me)
local nodes = redis.call('ZRANGE', load, 0, -1, 'WITHSCORES')
for i = 1, #nodes, 2 do
  local node, score = nodes[i], tonumber(nodes[i + 1])
  local entry = redis.call('GET', prefix .. node)
  if not entry then
    redis.call('ZREM', load, node)
  elseif best == nil then
    best, best_entry, best_score = node, entry, score
  end
end
if best == nil then return false end
if mine and tonumber(mine) <= best_score and best ~= me then
  local entry = redis.call('GET', prefix .. me)
  if entry then best, best_entry = me, entry end
end
redis.call('SET', room, best, 'PX', ttl)
redis.call('ZINCRBY', load, 1, best)
if best ~= me then
  local now = redis.call('TIME')
  local until_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(pending_ms)
  redis.call('ZADD', pending .. best, until_ms, name)
  redis.call('PEXPIRE', pending .. best, pending_ms)
end
return {best, best_entry}
"#,
    )
}

/// KEYS: node key, load set, this node's pending set, then the keys of the rooms this node
/// hosts. ARGV: node ttl, claim ttl (ms), this node's id, its entry, its load.
///
/// One heartbeat: writes the entry, and the score: its load plus the rooms still pending for it
/// (see [`claim`]). Then it keeps each hosted room: its claim is
/// refreshed, or taken again when it had expired (Redis was away, or restarted empty). Returns
/// the rooms another node holds now: the same room hosted twice, which docs/cluster.md covers.
pub fn beat() -> Script {
    Script::new(
        r#"
local node, load, pending = KEYS[1], KEYS[2], KEYS[3]
local node_ttl, claim_ttl, me, entry, score = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', pending, '-inf', now_ms)
redis.call('SET', node, entry, 'PX', node_ttl)
redis.call('ZADD', load, tonumber(score) + redis.call('ZCARD', pending), me)
local taken = {}
for i = 4, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if not owner or owner == me then
    redis.call('SET', KEYS[i], me, 'PX', claim_ttl)
  else
    taken[#taken + 1] = KEYS[i]
  end
end
return taken
"#,
    )
}

/// KEYS: room key. ARGV: this node's id. Deletes the claim only if this node still holds it.
pub fn release() -> Script {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
}

/// KEYS: node key, load set, pending set, then hosted room keys. ARGV: this node's id. A node leaving on
/// purpose (shutdown) frees its rooms at once instead of a ttl later.
pub fn leave() -> Script {
    Script::new(
        r#"
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 4, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 1
"#,
    )
}
