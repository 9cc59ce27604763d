// ICE restart on a real page (issue 11): Bob's Chromium page loses all UDP for 8 s (the shared
// netshape helper's `dark-except`, nftables on the input hook: every UDP packet that is not to
// or from Ada's ports is dropped, so whatever ports Bob's restarted ICE gathers stay dark
// too), then gets it back. Without rejoining (same
// id, one tile each, the server's connection count unchanged) Bob decodes Ada's video again
// and Ada decodes Bob's: `framesDecoded` rises after the unblock. Needs root and nft; run under
// `unshare --net` like every browser test.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { NetShape } from './lib/netshape.mjs';
import { launchChromium, newPage, waitFor, waitForMedia, inbound, ownId, roomUrl, gauges, waitForIdleServer } from './lib/browser.mjs';

const ROOM = 'dark-room';
const BLACKOUT_MS = 8000;
let server;
let browser;
let shape;

/** Every local UDP port of a page's two PeerConnections (its ICE candidates). */
function localPorts(page) {
  return page.evaluate(async () => {
    const ports = new Set();
    for (const peer of [window.sfuLite.publisher, window.sfuLite.subscriber]) {
      for (const r of (await peer.pc.getStats()).values()) {
        if (r.type === 'local-candidate' && r.port) ports.add(r.port);
      }
    }
    return [...ports];
  });
}

/** The server's ICE ufrag on Bob's [publisher, subscriber] connections: new after a restart. */
const serverUfrags = (page) =>
  page.evaluate(() =>
    [window.sfuLite.publisher, window.sfuLite.subscriber].map((p) => /a=ice-ufrag:(\S+)/.exec(p.pc.remoteDescription?.sdp ?? '')?.[1]),
  );
const frames = async (page, id) => (await inbound(page))[`${id}/camera`]?.framesDecoded ?? 0;
const states = (page) =>
  page.evaluate(() => [window.sfuLite.publisher?.pc.connectionState, window.sfuLite.subscriber?.pc.connectionState]);

before(async () => {
  server = await startServer();
  browser = await launchChromium();
  shape = new NetShape();
});

after(async () => {
  await shape?.close();
  await browser?.close();
  await server?.stop();
});

test('a page whose UDP goes dark for 8 s decodes again without rejoining', async () => {
  const ada = await newPage(browser);
  await ada.goto(roomUrl(server.url, ROOM, 'Ada'));
  const adaId = await ownId(ada);
  const bob = await newPage(browser);
  await bob.goto(roomUrl(server.url, ROOM, 'Bob'));
  const bobId = await ownId(bob);
  await waitForMedia(bob, [adaId]);
  await waitForMedia(ada, [bobId]);
  const before = await gauges(server.url);
  assert.equal(before.peer_connections, 4);

  const ufragsBefore = await serverUfrags(bob);
  const dark = await shape.darkExcept(await localPorts(ada));
  const blockedAt = Date.now();
  // The cut is real: Bob's page notices it.
  await waitFor(async () => (await states(bob)).some((s) => s !== 'connected'), {
    timeout: BLACKOUT_MS,
    interval: 100,
    what: "Bob's connections to go down",
  });
  // The blackout lasts its whole length: it is the scenario, not a synchronisation.
  await new Promise((r) => setTimeout(r, Math.max(0, blockedAt + BLACKOUT_MS - Date.now())));
  const [bobHad, adaHad] = [await frames(bob, adaId), await frames(ada, bobId)];
  const unblockedAt = Date.now();
  await shape.undark(dark);

  await waitFor(async () => (await frames(bob, adaId)) > bobHad, { timeout: 20_000, interval: 50, what: "Bob decoding Ada's video again" });
  const toBob = Date.now() - unblockedAt;
  await waitFor(async () => (await frames(ada, bobId)) > adaHad, { timeout: 20_000, interval: 50, what: "Ada decoding Bob's video again" });
  const fromBob = Date.now() - unblockedAt;
  console.log(`unblock -> frames decoded: on Bob's page ${toBob} ms, of Bob's camera on Ada's page ${fromBob} ms`);

  // Back through ICE restarts on both connections, not by the old pairs healing.
  const ufragsAfter = await serverUfrags(bob);
  assert.notEqual(ufragsAfter[0], ufragsBefore[0], 'publisher ICE restarted');
  assert.notEqual(ufragsAfter[1], ufragsBefore[1], 'subscriber ICE restarted');
  // The same participant: same id, one tile each, the server's connections as before.
  assert.equal(await bob.evaluate(() => window.sfuLite.id), bobId);
  assert.equal(await ada.$$eval(`#grid .tile[data-id="${bobId}"]`, (t) => t.length), 1);
  assert.equal(await bob.$$eval(`#grid .tile[data-id="${adaId}"]`, (t) => t.length), 1);
  const afterGauges = await gauges(server.url);
  for (const g of ['participants', 'peer_connections', 'published_tracks', 'subscriptions']) {
    assert.equal(afterGauges[g], before[g], `${g}: ${JSON.stringify(afterGauges)} vs ${JSON.stringify(before)}`);
  }
  await waitFor(async () => (await states(bob)).every((s) => s === 'connected'), { what: "Bob's connections up" });

  await ada.context().close();
  await bob.context().close();
  await waitForIdleServer(server.url);
});
