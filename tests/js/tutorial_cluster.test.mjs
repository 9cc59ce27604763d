// The tutorial's namespace `/` on a cluster of three nodes (docs/cluster.md, "The tutorial's
// roster"): official socket.io clients, each connected to a different node, see one roster
// with unique seqs, in one order, and exchange messages both ways. A node that dies takes its
// sockets off everyone's roster; a Redis restarted empty gets every live socket back. Real redis-server and sfu-lite processes.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io as ioV4 } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { startCluster } from './lib/cluster.mjs';
import { WAIT_MS, next } from './lib/events.mjs';

let cluster;
let redis;
let nodes;
const clients = [];

before(async () => {
  // Short heartbeats: the killed node's sockets leave the roster about a second later.
  cluster = await startCluster(['a', 'b', 'c']);
  ({ redis, nodes } = cluster);
});

after(async () => {
  for (const c of clients) c.close();
  await cluster?.stop();
});

/** A tutorial client on node `node`; it records every roster it is given, in order. */
function tutorial(node, version = 4) {
  const url = nodes[node].url;
  const socket =
    version === 4
      ? ioV4(url, { forceNew: true, reconnection: false })
      : ioV2(url, { forceNew: true, reconnection: false, transports: ['polling', 'websocket'] });
  socket.events = [];
  socket.on('ready', (id, persons) => {
    socket.ownId = id;
    socket.events.push(['ready', persons]);
  });
  socket.on('change', (persons) => socket.events.push(['change', persons]));
  clients.push(socket);
  return socket;
}

/**
 * A tutorial client on `node` that tries again, a bounded number of times, while the node
 * answers `cluster_unavailable` (its Redis connection is coming back).
 */
async function arrive(node) {
  for (let attempt = 0; attempt < 20; attempt++) {
    const socket = tutorial(node);
    const outcome = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready nor error within ${WAIT_MS} ms`)), WAIT_MS);
      const done = (what) => {
        clearTimeout(timer);
        socket.off('ready', onReady);
        socket.off('error', onError);
        resolve(what);
      };
      const onReady = () => done('ready');
      const onError = (e) => done(e?.code);
      socket.on('ready', onReady);
      socket.on('error', onError);
    });
    if (outcome === 'ready') return socket;
    assert.equal(outcome, 'cluster_unavailable');
    socket.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`node ${node} kept refusing sockets on /`);
}

const latest = (socket) => socket.events.at(-1)?.[1];
const ids = (persons) => (persons ?? []).map((p) => p.id);

/** Resolves once the latest roster `socket` was given satisfies `ok`, bounded. */
function rosterWhere(socket, ok, what) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!ok(latest(socket))) return false;
      clearTimeout(timer);
      socket.off('change', check);
      socket.off('ready', check);
      resolve(latest(socket));
      return true;
    };
    const timer = setTimeout(() => {
      socket.off('change', check);
      socket.off('ready', check);
      reject(new Error(`no roster with ${what} within ${WAIT_MS} ms: ${JSON.stringify(latest(socket))}`));
    }, WAIT_MS);
    socket.on('change', check);
    socket.on('ready', check);
    check();
  });
}

const sameIds = (want) => (persons) =>
  persons !== undefined && ids(persons).length === want.length && want.every((id) => ids(persons).includes(id));

test('clients on three nodes see one roster, talk across nodes, and lose a dead node', async () => {
  const ada = tutorial('a');
  const [adaId] = await next(ada, 'ready');
  const bob = tutorial('b');
  const [bobId] = await next(bob, 'ready');
  const cyd = tutorial('c', 2);
  const [cydId] = await next(cyd, 'ready');

  const everyone = [adaId, bobId, cydId];
  const rosters = await Promise.all(
    [ada, bob, cyd].map((s) => rosterWhere(s, sameIds(everyone), 'all three')),
  );
  // One roster: the same members in the same order with the same seqs, everywhere.
  for (const r of rosters) assert.deepEqual(r, rosters[0]);
  const seqs = rosters[0].map((p) => p.seq);
  assert.deepEqual([...seqs].sort(), [1, 2, 3], 'the smallest free seqs, each once');
  assert.deepEqual(ids(rosters[0]), everyone, 'in arrival order');
  // As on one node, each socket's first event is its `ready`.
  for (const s of [ada, bob, cyd]) assert.equal(s.events[0][0], 'ready');

  // Messages across nodes, both ways, with the tutorial's `from` and `time`.
  const atBob = next(bob, 'message');
  ada.emit('message', { to: bobId, type: 'text', content: { sdp: 'v=0' } });
  const [m1] = await atBob;
  assert.equal(m1.from, adaId);
  assert.equal(m1.to, bobId);
  assert.deepEqual(m1.content, { sdp: 'v=0' });
  assert.match(m1.time, /^\d{1,2}:\d{1,2}:\d{1,2}$/);

  const atAda = next(ada, 'message');
  bob.emit('message', { to: adaId, note: 'back', n: 12345678901234567890 });
  const [m2] = await atAda;
  assert.equal(m2.from, bobId);
  assert.equal(m2.note, 'back');

  const atCyd = next(cyd, 'message');
  ada.emit('message', { to: cydId, content: 'to the v2 client on c' });
  assert.equal((await atCyd)[0].from, adaId);

  // An id no node has is refused as on one node.
  const refused = next(ada, 'error');
  ada.emit('message', { to: 'nobody', content: 'x' });
  assert.equal((await refused)[0].code, 'unknown_peer');

  // Bob says bye: everyone's roster loses him, and a newcomer takes his seq.
  const bobSeq = rosters[0].find((p) => p.id === bobId).seq;
  bob.emit('bye');
  await Promise.all([ada, cyd].map((s) => rosterWhere(s, sameIds([adaId, cydId]), 'Bob gone')));
  const dee = tutorial('b');
  const [deeId, deePersons] = await next(dee, 'ready');
  assert.equal(deePersons.find((p) => p.id === deeId).seq, bobSeq, 'the smallest free seq again');

  // Node c dies without a word: once its entry expires, Cyd leaves every roster.
  nodes.c.proc.kill('SIGKILL');
  const left = [adaId, deeId];
  await Promise.all([ada, dee].map((s) => rosterWhere(s, sameIds(left), 'the dead node\'s socket gone')));

  // Redis restarts empty: each node puts its sockets back at its next heartbeat, and a
  // newcomer sees them all again.
  await redis.restart();
  const eve = await arrive('a');
  const back = await rosterWhere(eve, sameIds([adaId, deeId, eve.ownId]), 'every live socket back');
  const backSeqs = back.map((p) => p.seq);
  assert.equal(new Set(backSeqs).size, backSeqs.length, 'seqs still unique');
});
