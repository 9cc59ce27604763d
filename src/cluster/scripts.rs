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

use std::sync::LazyLock;

use redis::Script;

/// Each script is hashed once; Redis runs it by its hash and loads it again only after a
/// restart.
macro_rules! script {
    ($(#[$doc:meta])* $name:ident, $source:expr) => {
        $(#[$doc])*
        pub fn $name() -> &'static Script {
            static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new($source));
            &SCRIPT
        }
    };
}

script!(
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
    claim,
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
"#
);

script!(
    /// KEYS: node key, load set, this node's pending set, then the keys of the rooms this node
    /// hosts. ARGV: node ttl, claim ttl (ms), this node's id, its entry, its load.
    ///
    /// One heartbeat: writes the entry, and the score: its load plus the rooms still pending for it
    /// (see [`claim`]). Then it keeps each hosted room: its claim is
    /// refreshed, or taken again when it had expired (Redis was away, or restarted empty). Returns
    /// the rooms another node holds now: the same room hosted twice, which docs/cluster.md covers.
    beat,
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
"#
);

script!(
    /// KEYS: room key. ARGV: this node's id. Deletes the claim only if this node still holds it.
    release,
    r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#
);

script!(
    /// KEYS: node key, load set, pending set, then hosted room keys. ARGV: this node's id. A node leaving on
    /// purpose (shutdown) frees its rooms at once instead of a ttl later.
    leave,
    r#"
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 4, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 1
"#
);

/// The roster of `/` (see `super::tutorial`), shared by its scripts: each begins with this.
/// ARGV[1] is the key prefix. Keys: the hashes `tutorial:seq` and `tutorial:node` (socket id →
/// its `seq`, its node), the sorted set `tutorial:order` (ids in arrival order, scored by the
/// counter `tutorial:count`), the counter `tutorial:version` (one per published roster), and
/// `tutorial:ops:<node>`: how many changes of its own a node has made, so that a heartbeat's
/// statement of its members, read before a later change, cannot undo that change.
macro_rules! roster_lua {
    () => {
        r#"
local P = ARGV[1]
local SEQ, NODE, ORDER = P .. 'tutorial:seq', P .. 'tutorial:node', P .. 'tutorial:order'
local function add(id, node)
  if redis.call('HEXISTS', SEQ, id) == 1 then
    if redis.call('HGET', NODE, id) == node then return false end
    redis.call('HSET', NODE, id, node)
    return true
  end
  -- The smallest seq no member holds, as on one node.
  local held = {}
  for _, s in ipairs(redis.call('HVALS', SEQ)) do held[tonumber(s)] = true end
  local seq = 1
  while held[seq] do seq = seq + 1 end
  redis.call('HSET', SEQ, id, seq)
  redis.call('HSET', NODE, id, node)
  redis.call('ZADD', ORDER, redis.call('INCR', P .. 'tutorial:count'), id)
  return true
end
local function remove(id)
  redis.call('HDEL', SEQ, id)
  redis.call('HDEL', NODE, id)
  redis.call('ZREM', ORDER, id)
end
local function roster(version, ready)
  local parts = {}
  for _, id in ipairs(redis.call('ZRANGE', ORDER, 0, -1)) do
    parts[#parts + 1] = '{"id":' .. cjson.encode(id) .. ',"seq":' .. redis.call('HGET', SEQ, id)
      .. ',"node":' .. cjson.encode(redis.call('HGET', NODE, id)) .. '}'
  end
  local r = ready and cjson.encode(ready) or 'null'
  return '{"version":' .. version .. ',"ready":' .. r .. ',"members":[' .. table.concat(parts, ',') .. ']}'
end
local function publish(ready)
  local version = redis.call('INCR', P .. 'tutorial:version')
  redis.call('PUBLISH', P .. 'tutorial:roster', roster(version, ready))
  return version
end
-- Records change number n of node `node`; returns the highest recorded before.
local function ops(node, n)
  local key = P .. 'tutorial:ops:' .. node
  local stored = tonumber(redis.call('GET', key) or '0')
  if n > stored then redis.call('SET', key, n, 'PX', 600000) else redis.call('PEXPIRE', key, 600000) end
  return stored
end
"#
    };
}

script!(
    /// ARGV: prefix, this node's id, its change count, the socket id. Adds the socket (a
    /// heartbeat may have already) and publishes the roster with it as `ready`. Returns the
    /// roster's version.
    tutorial_join,
    concat!(
        roster_lua!(),
        r#"
local me, n, id = ARGV[2], tonumber(ARGV[3]), ARGV[4]
ops(me, n)
add(id, me)
return publish(id)
"#
    )
);

script!(
    /// ARGV: prefix, this node's id, its change count, the socket id. Takes the socket off the
    /// roster, if it is this node's, and publishes the roster. Returns the roster's version.
    tutorial_leave,
    concat!(
        roster_lua!(),
        r#"
local me, n, id = ARGV[2], tonumber(ARGV[3]), ARGV[4]
ops(me, n)
if redis.call('HGET', NODE, id) ~= me then return 0 end
remove(id)
return publish(false)
"#
    )
);

script!(
    /// ARGV: prefix, this node's id, its change count when `ids` were read, the node key
    /// prefix, then the ids of its sockets. Makes this node's members exactly `ids` (unless a
    /// change newer than the count reached Redis first), drops the members of nodes that have
    /// no entry (dead), and publishes the roster if anything changed. Returns the version.
    tutorial_sync,
    concat!(
        roster_lua!(),
        r#"
local me, n, node_prefix = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local changed = false
if ops(me, n) <= n then
  local want = {}
  for i = 5, #ARGV do want[ARGV[i]] = true end
  for _, id in ipairs(redis.call('ZRANGE', ORDER, 0, -1)) do
    if redis.call('HGET', NODE, id) == me and not want[id] then
      remove(id)
      changed = true
    end
  end
  for i = 5, #ARGV do
    if add(ARGV[i], me) then changed = true end
  end
end
local alive = {}
for _, id in ipairs(redis.call('ZRANGE', ORDER, 0, -1)) do
  local node = redis.call('HGET', NODE, id)
  if node ~= me then
    if alive[node] == nil then alive[node] = redis.call('EXISTS', node_prefix .. node) == 1 end
    if not alive[node] then
      remove(id)
      changed = true
    end
  end
end
if changed then return publish(false) end
return tonumber(redis.call('GET', P .. 'tutorial:version') or '0')
"#
    )
);

script!(
    /// ARGV: prefix. The roster as published, without a change (read after subscribing).
    tutorial_roster,
    concat!(
        roster_lua!(),
        r#"
return roster(tonumber(redis.call('GET', P .. 'tutorial:version') or '0'), false)
"#
    )
);
