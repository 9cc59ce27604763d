// Two Chromium pages in one room on a cluster of three nodes behind one URL (a plain TCP
// balancer, round robin per connection, not sticky): wherever their sockets land, they are
// sent to the room's host and see each other. Then the host is killed (SIGKILL): both pages go back to the one URL by themselves,
// the room is claimed again on a live node, and each page decodes the other's camera again.
// Real redis-server and sfu-lite processes, docs/cluster.md.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRedis, startNode, startBalancer } from './lib/cluster.mjs';
import { launchChromium, newPage, waitFor, waitForMedia, ownId, roomUrl, gauges } from './lib/browser.mjs';

const ROOM = 'cluster-room';
let redis;
let nodes = [];
let balancer;
let browser;

before(async () => {
  redis = await startRedis();
  for (const id of ['a', 'b', 'c']) nodes.push(await startNode(redis.url, id));
  balancer = await startBalancer(nodes.map((n) => n.port));
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await balancer?.stop();
  for (const n of nodes) await n.stop().catch(() => {});
  await redis?.stop();
});

/** Which node holds the room's PeerConnections now. */
async function host() {
  const live = nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);
  const counts = await Promise.all(live.map(async (n) => [n, (await gauges(n.url)).peer_connections ?? 0]));
  const hosting = counts.filter(([, pcs]) => pcs > 0);
  return hosting.length === 1 && counts.every(([n, pcs]) => n === hosting[0][0] || pcs === 0) ? hosting[0] : null;
}

test('two pages behind one balancer meet on the host, and again after it dies', async () => {
  const ada = await newPage(browser);
  const bob = await newPage(browser);
  await ada.goto(roomUrl(balancer.url, ROOM, 'Ada'));
  await bob.goto(roomUrl(balancer.url, ROOM, 'Bob'));
  const [adaId, bobId] = [await ownId(ada), await ownId(bob)];
  await waitForMedia(ada, [bobId], { audio: false });
  await waitForMedia(bob, [adaId], { audio: false });
  const [first, pcs] = await waitFor(host, { what: 'one node holding every PeerConnection' });
  assert.equal(pcs, 4, 'two PeerConnections per page, all on the host');

  // The host dies without a word: its entry in Redis expires (cluster.node_ttl_ms).
  const killedAt = Date.now();
  first.proc.kill('SIGKILL');
  const rejoined = async (page, oldId) => {
    const id = await waitFor(() => page.evaluate((old) => {
      const id = window.sfuLite?.id;
      return id && id !== old ? id : null;
    }, oldId), { timeout: 10_000, what: 'a rejoin after the host died' });
    return id;
  };
  const [ada2, bob2] = await Promise.all([rejoined(ada, adaId), rejoined(bob, bobId)]);
  await waitForMedia(ada, [bob2], { audio: false, timeout: 10_000 });
  await waitForMedia(bob, [ada2], { audio: false, timeout: 10_000 });
  const [second] = await waitFor(host, { what: 'one live node holding every PeerConnection' });
  assert.notEqual(second, first);
  console.log(`media back on both pages ${Date.now() - killedAt} ms after the host was killed`);
  await ada.close();
  await bob.close();
});
