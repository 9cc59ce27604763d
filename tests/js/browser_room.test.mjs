// Three, then four Chromium pages in one room through the real server: everyone decodes
// everyone's camera and microphone, a late joiner gets pictures at once, chat lines, mute and
// camera-off icons, screen sharing, and leaving. Screenshots go to target/screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { io as ioV4 } from 'socket.io-client';
import { startServer } from './lib/server.mjs';
import { launchChromium, newPage, waitFor, waitForMedia, inbound, ownId, roomUrl, gauges, waitForIdleServer } from './lib/browser.mjs';

const SHOTS = fileURLToPath(new URL('../../target/screenshots/', import.meta.url));
const ROOM = 'e2e-room';
let server;
let browser;
const pages = {}; // name -> {page, id}

async function join(name, viewport) {
  const page = await newPage(browser, viewport);
  await page.goto(roomUrl(server.url, ROOM, name));
  const id = await ownId(page);
  pages[name] = { page, id };
  return pages[name];
}

const tile = (id) => `#grid .tile[data-id="${id}"]`;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  server = await startServer();
  browser = await launchChromium();
  // Ada's page is the one in the screenshots: a laptop-sized window.
  await join('Ada', { width: 1100, height: 640 });
  await join('Grace', { width: 480, height: 360 });
  await join('Linus', { width: 480, height: 360 });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('three pages decode video and audio from the other two', async () => {
  const names = Object.keys(pages);
  for (const name of names) {
    const others = names.filter((n) => n !== name).map((n) => pages[n].id);
    await waitForMedia(pages[name].page, others, { size: [320, 240] });
  }
  // The DOM shows it too: a playing video in every remote tile, names on tiles.
  const ada = pages.Ada.page;
  for (const name of ['Grace', 'Linus']) {
    const t = tile(pages[name].id);
    await waitFor(() => ada.$eval(`${t} video`, (v) => v.videoWidth === 320 && v.readyState >= 2), {
      what: `${name}'s tile playing on Ada's page`,
    });
    assert.equal(await ada.$eval(`${t} .name`, (n) => n.textContent), name);
  }
  assert.equal(await ada.$eval(`${tile(pages.Ada.id)} .name`, (n) => n.textContent), 'Ada (you)');
  // The fake microphone beeps: the speaking ring lights up on remote tiles.
  await waitFor(() => ada.$$eval('#grid .tile:not(.local)', (ts) => ts.some((t) => t.dataset.speaking === 'true')), {
    what: 'a speaking indicator on a remote tile',
  });
  await ada.screenshot({ path: `${SHOTS}room-3.png` });
});

test('a chat line from one page appears on the others', async () => {
  const ada = pages.Ada.page;
  await ada.click('#btn-chat');
  await ada.fill('#chat-input', 'Hello from Ada');
  await ada.press('#chat-input', 'Enter');
  for (const name of ['Grace', 'Linus']) {
    const p = pages[name].page;
    await waitFor(() => p.$$eval('#chat-log li', (lis) => lis.some((li) => li.textContent.includes('Hello from Ada'))), {
      what: `the chat line on ${name}'s page`,
    });
    const sender = await p.$eval('#chat-log li:last-child .meta b', (b) => b.textContent);
    assert.equal(sender, 'Ada');
    assert.equal(await p.$eval('#unread', (u) => u.textContent), '1', 'unread counter on a closed chat');
  }
  await pages.Grace.page.click('#btn-chat');
  await pages.Grace.page.fill('#chat-input', 'Hi Ada!');
  await pages.Grace.page.click('#chat-form button[type=submit]');
  await waitFor(() => ada.$$eval('#chat-log li', (lis) => lis.some((li) => li.textContent.includes('Hi Ada!'))), {
    what: "Grace's reply on Ada's page",
  });
  await ada.screenshot({ path: `${SHOTS}room-3-chat.png` });

  // Any client may send any JSON as `content`; the page shows strings only and must not throw
  // on the rest (`{"toString": 1}` used to, and the line was lost).
  const errors = [];
  const onError = (err) => errors.push(err.message);
  ada.on('pageerror', onError);
  const bot = ioV4(new URL('rooms', server.url).href, { forceNew: true, reconnection: false });
  const botAck = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no join ack for the bot')), 10_000);
    bot.emit('join', { room: ROOM, name: 'Bot' }, (a) => {
      clearTimeout(timer);
      resolve(a);
    });
  });
  bot.emit('message', { content: { toString: 1 } });
  bot.emit('message', { content: 'after the object' });
  await waitFor(() => ada.$$eval('#chat-log li', (lis) => lis.some((li) => li.textContent.includes('after the object'))), {
    what: "the bot's second line on Ada's page",
  });
  const fromBot = await ada.$$eval(`#chat-log li[data-from="${botAck.id}"] .text`, (ts) => ts.map((t) => t.textContent));
  assert.deepEqual(fromBot, ['(a message this page cannot show)', 'after the object']);
  assert.deepEqual(errors, []);
  ada.off('pageerror', onError);
  bot.close();
  for (const { page } of Object.values(pages)) {
    await waitFor(async () => (await page.$$(tile(botAck.id))).length === 0, { what: 'the bot gone' });
  }
});

test('muting the microphone and stopping the camera show on the others', async () => {
  const grace = pages.Grace;
  await grace.page.click('#btn-mic');
  await grace.page.click('#btn-cam');
  for (const name of ['Ada', 'Linus']) {
    const p = pages[name].page;
    const t = tile(grace.id);
    await waitFor(() => p.$eval(t, (el) => el.dataset.audioMuted === 'true' && el.dataset.videoMuted === 'true'), {
      what: `Grace muted on ${name}'s page`,
    });
    // Camera off: the avatar replaces the video, and the muted icons are visible.
    assert.equal(await p.$eval(`${t} .avatar`, (a) => getComputedStyle(a).display !== 'none'), true);
    assert.equal(await p.$eval(`${t} .badge.mic-off`, (b) => getComputedStyle(b).display !== 'none'), true);
    assert.equal(await p.$eval(`${t} .badge.cam-off`, (b) => getComputedStyle(b).display !== 'none'), true);
  }
  await pages.Ada.page.click('#btn-people');
  await waitFor(() => pages.Ada.page.$eval(`#people-list li[data-id="${grace.id}"]`, (li) => li.dataset.audioMuted === 'true'), {
    what: 'Grace muted in the participant list',
  });
  await pages.Ada.page.screenshot({ path: `${SHOTS}room-3-people.png` });
  // The picture in the README: one camera off, chat open.
  await pages.Ada.page.click('#tab-chat');
  await pages.Ada.page.screenshot({ path: `${SHOTS}room-3-muted-chat.png` });
  await pages.Ada.page.click('#btn-stats');
  await waitFor(() => pages.Ada.page.$eval(`${tile(pages.Linus.id)} .stats`, (s) => /fps/.test(s.textContent) && /kb\/s/.test(s.textContent)), {
    what: 'statistics on Linus tile',
  });
  await pages.Ada.page.screenshot({ path: `${SHOTS}room-3-muted-stats.png` });
  await pages.Ada.page.click('#btn-stats');

  // Camera back on: pictures again, icons gone.
  await grace.page.click('#btn-cam');
  await grace.page.click('#btn-mic');
  await waitFor(() => pages.Ada.page.$eval(tile(grace.id), (el) => el.dataset.audioMuted === 'false' && el.dataset.videoMuted === 'false' && el.classList.contains('has-video')), {
    what: 'Grace unmuted on Ada page',
  });
  await waitForMedia(pages.Ada.page, [grace.id]);
});

test('a shared screen reaches the others and shows large', async () => {
  const linus = pages.Linus;
  await linus.page.click('#btn-screen');
  for (const name of ['Ada', 'Grace']) {
    const p = pages[name].page;
    await waitForMedia(p, [linus.id], { source: 'screen', audio: false });
    await waitFor(() => p.$eval(`#stage .screen[data-id="${linus.id}"] video`, (v) => v.videoWidth > 0), {
      what: `Linus's screen on the stage of ${name}'s page`,
    });
  }
  await pages.Ada.page.screenshot({ path: `${SHOTS}room-3-screen.png` });
  await linus.page.click('#btn-screen');
  await waitFor(() => pages.Ada.page.$$eval('#stage .screen', (s) => s.length === 0), { what: 'stage emptied after stop' });
});

test('a pinned person shows large on the stage and goes back', async () => {
  const ada = pages.Ada.page;
  const linus = pages.Linus.id;
  await ada.hover(tile(linus));
  await ada.click(`${tile(linus)} .pin`);
  await waitFor(() => ada.$eval(`#stage .tile[data-id="${linus}"] video`, (v) => v.videoWidth > 0 && v.clientWidth > 400), {
    what: "Linus's tile large on the stage",
  });
  await ada.click(`#stage .tile[data-id="${linus}"] .pin`);
  await waitFor(() => ada.$$eval(`#grid .tile[data-id="${linus}"]`, (t) => t.length === 1), { what: 'tile back in the grid' });
  assert.equal(await ada.$eval('#stage', (s) => s.hidden), true);
});

test('a fourth page joining late shows the others within 3 s', async (t) => {
  const page = await newPage(browser, { width: 480, height: 360 });
  await page.goto(roomUrl(server.url, ROOM, 'Barbara'));
  const id = await ownId(page);
  const start = Date.now();
  pages.Barbara = { page, id };
  const others = ['Ada', 'Grace', 'Linus'].map((n) => pages[n].id);
  await waitFor(async () => {
    const s = await inbound(page);
    return others.every((o) => s[`${o}/camera`]?.framesDecoded > 0);
  }, { timeout: 3000, what: 'first decoded frames from all three' });
  const elapsed = Date.now() - start;
  t.diagnostic(`first frames from all three ${elapsed} ms after the join acknowledgement`);
  await waitFor(() => page.$$eval('#grid .tile.has-video video', (vs) => vs.filter((v) => v.videoWidth > 0).length >= 4), {
    timeout: Math.max(3000 - elapsed, 500),
    what: 'four video tiles showing pictures',
  });
  // And the three see the newcomer.
  for (const name of ['Ada', 'Grace', 'Linus']) await waitForMedia(pages[name].page, [id]);
});

test('a leaving page disappears from the others within 2 s', async (t) => {
  const grace = pages.Grace;
  const clicked = Date.now();
  await grace.page.click('#btn-leave');
  await waitFor(() => grace.page.$eval('#goodbye', (g) => !g.hidden), { what: 'goodbye screen' });
  const gone = (id) => Promise.all(['Ada', 'Linus', 'Barbara'].filter((n) => pages[n]).map((n) =>
    waitFor(() => pages[n].page.$$eval(tile(id), (t) => t.length === 0), { timeout: 2000, what: `tile ${id} gone on ${n}'s page` })));
  await gone(grace.id);
  t.diagnostic(`tile gone everywhere ${Date.now() - clicked} ms after the click on Leave`);
  delete pages.Grace;

  // Closing the tab counts as leaving too.
  const barbara = pages.Barbara;
  await barbara.page.context().close();
  delete pages.Barbara;
  await gone(barbara.id);
  const left = await pages.Ada.page.$$eval('#grid .tile', (ts) => ts.length);
  assert.equal(left, 2);
});

test('the server releases everything once the last pages close', async () => {
  const during = await gauges(server.url);
  assert.equal(during.participants, 2);
  assert.equal(during.peer_connections, 4, 'two PeerConnections per participant');
  for (const name of Object.keys(pages)) {
    await pages[name].page.context().close();
    delete pages[name];
  }
  await waitForIdleServer(server.url);
});
