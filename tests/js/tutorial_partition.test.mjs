// The tutorial's `/` across two nodes when one node's roster subscription dies silently: the
// network drops what Redis sends on that connection, with no reset, so the node's TCP
// connection stays open and delivers nothing. The node must notice (the heartbeat's roster
// version runs ahead of what the subscription delivered) and subscribe again, so its sockets
// still learn of arrivals on the other node and still get messages from there.
//
// "Silently" is made real with one nftables rule on the input hook that drops every TCP
// segment from Redis to that connection's local port only. Needs root and nft; run under
// `unshare --net` like the other tests (scripts/test.sh does).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { io } from 'socket.io-client';
import { startCluster } from './lib/cluster.mjs';
import { WAIT_MS, next } from './lib/events.mjs';

const NFT_TABLE = 'sfu_partition_test';
let cluster;
let redis;
let nodes;
const clients = [];

before(async () => {
  cluster = await startCluster(['a', 'b']);
  ({ redis, nodes } = cluster);
});

after(async () => {
  try {
    execFileSync('nft', ['delete', 'table', 'ip', NFT_TABLE], { stdio: 'ignore' });
  } catch {}
  for (const c of clients) c.close();
  await cluster?.stop();
});

const redisPort = () => Number(new URL(redis.url).port);

function tutorial(node) {
  const socket = io(nodes[node].url, { forceNew: true, reconnection: false });
  socket.rosters = [];
  socket.on('ready', (id, persons) => {
    socket.ownId = id;
    socket.rosters.push(persons);
  });
  socket.on('change', (persons) => socket.rosters.push(persons));
  clients.push(socket);
  return socket;
}

/** Resolves once the latest roster of `socket` has exactly `want` (ids), bounded. */
function rosterOf(socket, want) {
  const ok = () => {
    const ids = (socket.rosters.at(-1) ?? []).map((p) => p.id).sort();
    return JSON.stringify(ids) === JSON.stringify([...want].sort());
  };
  return new Promise((resolve, reject) => {
    const check = () => ok() && (clearTimeout(timer), socket.off('change', check), resolve());
    const timer = setTimeout(() => {
      socket.off('change', check);
      reject(new Error(`no roster of ${want} within ${WAIT_MS} ms: ${JSON.stringify(socket.rosters.at(-1))}`));
    }, WAIT_MS);
    socket.on('change', check);
    check();
  });
}

/** The local ports of node `node`'s subscriber connections to Redis (the ones in pub/sub mode). */
function subscriptionPorts(node) {
  const pubsub = execFileSync('redis-cli', ['-p', String(redisPort()), 'CLIENT', 'LIST', 'TYPE', 'pubsub'])
    .toString()
    .split('\n')
    .map((line) => Number(line.match(/\baddr=127\.0\.0\.1:(\d+)/)?.[1]))
    .filter(Boolean);
  const mine = execFileSync('ss', ['-tnpH', 'state', 'established', `( dport = :${redisPort()} )`])
    .toString()
    .split('\n')
    .filter((line) => line.includes(`pid=${nodes[node].proc.pid},`))
    .map((line) => Number(line.trim().split(/\s+/)[2]?.split(':').at(-1)));
  return pubsub.filter((port) => mine.includes(port));
}

test('a node whose roster subscription goes silent subscribes again and misses nothing for good', async () => {
  const ada = tutorial('a');
  const [adaId] = await next(ada, 'ready');
  const dead = subscriptionPorts('a');
  assert.equal(dead.length, 1, "node a's one subscription, found in Redis and in its sockets");

  // From now on nothing Redis sends on that connection reaches node a; the connection stays up.
  execFileSync('nft', ['-f', '-'], {
    input: `table ip ${NFT_TABLE} {
      chain input {
        type filter hook input priority 0; policy accept;
        tcp sport ${redisPort()} tcp dport ${dead[0]} counter drop
      }
    }\n`,
  });

  // Bob arrives on node b: Ada, on node a, still gets the roster with him, and his message.
  const bob = tutorial('b');
  const [bobId] = await next(bob, 'ready');
  await rosterOf(ada, [adaId, bobId]);
  const counted = execFileSync('nft', ['list', 'table', 'ip', NFT_TABLE]).toString();
  assert.ok(Number(counted.match(/counter packets (\d+)/)?.[1]) > 0, 'Redis did send on the dead connection');
  assert.ok(subscriptionPorts('a').some((port) => port !== dead[0]), 'node a subscribed again');

  const atAda = next(ada, 'message');
  bob.emit('message', { to: adaId, content: 'across the mended subscription' });
  const [m] = await atAda;
  assert.equal(m.from, bobId);

  // And Bob's departure reaches her too.
  bob.emit('bye');
  await rosterOf(ada, [adaId]);
});
