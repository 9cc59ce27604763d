// The lobby and recovery in Chromium: a shared link prefills the room, a person joins with the
// keyboard alone, and a page whose connection drops joins again by itself and gets media back.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { launchChromium, newPage, waitFor, waitForMedia, ownId, roomUrl } from './lib/browser.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a shared link prefills the room and the keyboard alone joins', async () => {
  const page = await newPage(browser);
  await page.goto(new URL('/?room=weekly-sync&lowres=1', server.url).href);
  assert.equal(await page.inputValue('#room'), 'weekly-sync');
  await waitFor(() => page.$eval('#preview', (v) => v.videoWidth > 0), { what: 'camera preview' });
  await page.focus('#name');
  await page.keyboard.type('Keyboard Kate');
  await page.keyboard.press('Enter');
  await ownId(page);
  assert.equal(await page.$eval('#room-title', (h) => h.textContent), 'weekly-sync');
  // Ctrl+D mutes, as in other meeting tools.
  await page.keyboard.press('Control+d');
  assert.equal(await page.getAttribute('#btn-mic', 'aria-pressed'), 'true');
  await page.context().close();
});

test('joining with camera and microphone off, then turning them on, reaches the others', async () => {
  const a = await newPage(browser);
  await a.goto(roomUrl(server.url, 'later', 'Shy', { cam: '0', mic: '0' }));
  const aId = await ownId(a);
  const b = await newPage(browser);
  await b.goto(roomUrl(server.url, 'later', 'Watcher'));
  await ownId(b);
  const t = `#grid .tile[data-id="${aId}"]`;
  await waitFor(() => b.$eval(t, (el) => el.dataset.audioMuted === 'true' && el.dataset.videoMuted === 'true'), {
    what: 'Shy shown muted with camera off',
  });
  await a.click('#btn-cam');
  await a.click('#btn-mic');
  await waitForMedia(b, [aId]);
  await waitFor(() => b.$eval(t, (el) => el.classList.contains('has-video') && el.dataset.audioMuted === 'false'), {
    what: 'Shy shown with video and sound',
  });
  await a.context().close();
  await b.context().close();
});

test('switching the camera mid-meeting keeps the picture flowing to the others', async () => {
  const a = await newPage(browser);
  await a.goto(roomUrl(server.url, 'switch', 'Ann'));
  const b = await newPage(browser);
  await b.goto(roomUrl(server.url, 'switch', 'Bob'));
  const aId = await ownId(a);
  await ownId(b);
  await waitForMedia(b, [aId]);
  const before = await a.evaluate(() => window.sfuLite.media.video.id);
  await a.click('#btn-settings');
  const cameras = await a.$$eval('#camera-select-2 option', (os) => os.map((o) => o.value).filter((v) => v && v !== 'none'));
  assert.ok(cameras.length >= 1, 'the cameras are listed by name');
  // From "Default camera" to a named one: a new capture replaces the old on the sender.
  await a.selectOption('#camera-select-2', cameras[cameras.length - 1]);
  await waitFor(() => a.evaluate((old) => {
    const { media, publisher } = window.sfuLite;
    return media.video && media.video.id !== old && publisher.transceivers.get('camera').sender.track === media.video;
  }, before), { what: 'the new camera on the sender' });
  await a.keyboard.press('Escape');
  await waitForMedia(b, [aId]);
  assert.equal(await b.$eval(`#grid .tile[data-id="${aId}"]`, (t) => t.dataset.videoMuted), 'false');
  await a.context().close();
  await b.context().close();
});

test('a page whose connection drops rejoins and gets media back', async () => {
  const a = await newPage(browser);
  await a.goto(roomUrl(server.url, 'flaky', 'Ann'));
  const b = await newPage(browser);
  await b.goto(roomUrl(server.url, 'flaky', 'Bob'));
  const bId = await ownId(b);
  const aId = await ownId(a);
  await waitForMedia(a, [bId]);
  // Cut Ann's transport under the page's feet, as a network change would.
  await a.evaluate(() => window.sfuLite.session.socket.io.engine.close());
  await waitFor(() => a.$eval('#meeting', (m) => m.dataset.state === 'reconnecting'), { what: 'reconnecting banner' });
  const aId2 = await waitFor(async () => {
    const id = await a.evaluate(() => window.sfuLite.id);
    return id && id !== aId && id;
  }, { what: 'a new id after rejoining' });
  await waitForMedia(a, [bId]);
  await waitForMedia(b, [aId2]);
  await waitFor(() => b.$$eval(`#grid .tile[data-id="${aId}"]`, (t) => t.length === 0), { what: "Ann's old tile gone on Bob's page" });
  await waitFor(() => a.$eval('#banner', (el) => el.hidden), { what: 'banner cleared' });
  await a.context().close();
  await b.context().close();
});

test('pages rejoin by themselves after the server restarts', async () => {
  const a = await newPage(browser);
  await a.goto(roomUrl(server.url, 'restart', 'Ann'));
  const b = await newPage(browser);
  await b.goto(roomUrl(server.url, 'restart', 'Bob'));
  const [aId, bId] = [await ownId(a), await ownId(b)];
  await waitForMedia(a, [bId]);
  // Same port, new process: every socket and every PeerConnection is gone at once.
  const port = server.port;
  await server.stop();
  await waitFor(() => a.$eval('#meeting', (m) => m.dataset.state === 'reconnecting'), { what: 'reconnecting state' });
  server = await startServer({ args: ['--listen', `127.0.0.1:${port}`] });
  const newId = (page, old) => waitFor(async () => {
    const id = await page.evaluate(() => window.sfuLite.id);
    return id && id !== old && id;
  }, { timeout: 30_000, what: 'a new id after the restart' });
  const [aId2, bId2] = [await newId(a, aId), await newId(b, bId)];
  await waitForMedia(a, [bId2], { timeout: 30_000 });
  await waitForMedia(b, [aId2], { timeout: 30_000 });
});

test('a refused join says why and offers to try again', async () => {
  const small = await startServer({ env: { SFU_LITE_SIGNALING_MAX_MEMBERS_PER_ROOM: '1' } });
  try {
    const a = await newPage(browser);
    await a.goto(roomUrl(small.url, 'tiny', 'First'));
    await ownId(a);
    const b = await newPage(browser);
    await b.goto(roomUrl(small.url, 'tiny', 'Second'));
    await waitFor(() => b.$eval('#goodbye', (g) => !g.hidden), { what: 'the refusal screen' });
    assert.equal(await b.textContent('#goodbye-title'), 'Could not join');
    assert.match(await b.textContent('#goodbye-text'), /tiny/);
    assert.equal(await b.evaluate(() => document.activeElement?.id), 'rejoin');
    // The one who got in is undisturbed.
    assert.equal(await a.$$eval('#grid .tile', (t) => t.length), 1);
    await a.context().close();
    await b.context().close();
  } finally {
    await small.stop();
  }
});
