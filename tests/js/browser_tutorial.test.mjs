// The tutorial's own page (static/tutorial.html, its HTML and script as published) against our
// server in two Chromium pages: both connect, see each other in the user list, and one sends the
// other a message.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { launchChromium, newPage, waitFor } from './lib/browser.mjs';

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

/** Radio buttons in #users: the ids of the other connected pages. */
const users = (page) => page.$$eval('#users input[type=radio]', (rs) => rs.map((r) => r.value));
const ownSocketId = (page) => page.evaluate(() => window.$?.io?.id);

test('two tutorial pages see each other and exchange a message', async () => {
  const a = await newPage(browser);
  const b = await newPage(browser);
  for (const [page, name] of [[a, '甲'], [b, '乙']]) {
    await page.goto(new URL('/tutorial.html', server.url).href);
    assert.equal(await page.inputValue('#sserver'), new URL(server.url).origin.replace(/^http/, 'ws'));
    await page.fill('#sname', name);
    await page.click('#btnConn');
    await waitFor(() => ownSocketId(page), { what: `${name} connected (ready)` });
  }
  const idA = await ownSocketId(a);
  const idB = await ownSocketId(b);
  await waitFor(async () => (await users(a)).includes(idB), { what: "B in A's user list" });
  await waitFor(async () => (await users(b)).includes(idA), { what: "A in B's user list" });
  assert.ok(!(await users(a)).includes(idA), 'a page does not list itself');
  // The id others see and address is a public id, not the page's Engine.IO session id (which
  // would let them post as it over polling).
  for (const [page, id] of [[a, idA], [b, idB]]) {
    const sessionId = await page.evaluate(() => window.$.io.socket.io.engine.id);
    assert.equal(typeof sessionId, 'string');
    assert.notEqual(id, sessionId);
  }
  // The trace log shows the tutorial's own lines.
  assert.match(await a.textContent('#outDiv'), /甲 连接成功！/);

  await a.check(`#users input[value="${idB}"]`);
  await a.fill('#sconent', 'hello 乙');
  await a.click('#btnSend');
  const line = await waitFor(async () => {
    const text = await b.textContent('#outDiv');
    return text.includes('收到：') && text.includes('hello 乙') && text;
  }, { what: 'the message in B\'s log' });
  const received = JSON.parse(line.slice(line.indexOf('收到：') + 3).split('\n')[0].match(/\{.*\}/)[0]);
  assert.equal(received.from, idA);
  assert.equal(received.content, 'hello 乙');
  assert.match(received.time, /^\d{1,2}:\d{1,2}:\d{1,2}$/);

  // A leaves with the page: B's list empties.
  await a.close();
  await waitFor(async () => !(await users(b)).includes(idA), { what: "A gone from B's user list" });
});
