// Access control in real Chromium pages: the password prompt of a protected room, and a
// moderator's page (invited with ?token=) muting and removing another page, which says why.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, serverBin } from './lib/server.mjs';
import { launchChromium, newPage, waitFor, ownId, roomUrl } from './lib/browser.mjs';

const SECRET = 'browser-test-secret-0123456789-abcdefgh';
let server;
let browser;
let configPath;

before(async () => {
  const hash = execFileSync(serverBin(), ['hash-password'], { input: 'sesame\n' }).toString().trim();
  const dir = mkdtempSync(join(tmpdir(), 'sfu-lite-access-'));
  configPath = join(dir, 'sfu.toml');
  writeFileSync(
    configPath,
    `[auth.keys.main]\nalg = "HS256"\nsecret = "${SECRET}"\n[rooms."vault"]\npassword = "${hash}"\n`,
  );
  server = await startServer({ args: ['--config', configPath] });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

function token(room, name, role) {
  return execFileSync(serverBin(), ['token', '--config', configPath, '--room', room, '--name', name, '--role', role, '--ttl', '10m'])
    .toString()
    .trim();
}

test('a protected room asks for its password, again when wrong, and admits with the right one', async () => {
  const page = await newPage(browser);
  await page.goto(roomUrl(server.url, 'vault', 'Pat'));
  await page.waitForSelector('#password-form', { timeout: 15_000 });
  assert.equal(await page.$eval('#goodbye-title', (h) => h.textContent), 'This room is protected');
  await page.fill('#room-password', 'open sesame');
  await page.press('#room-password', 'Enter');
  await waitFor(() => page.$eval('#password-form label', (l) => l.textContent.includes('wrong password')), {
    what: 'the prompt again, saying the password was wrong',
  });
  await page.fill('#room-password', 'sesame');
  await page.press('#room-password', 'Enter');
  assert.ok(await ownId(page), 'joined with the right password');
  await page.context().close();
});

/** Packets received by `page` on the track of `participant`'s `source`. */
function packets(page, participant, source) {
  return page.evaluate(async ({ participant, source }) => {
    const sub = window.sfuLite?.subscriber;
    if (!sub) return -1;
    for (const r of (await sub.pc.getStats()).values()) {
      const info = r.type === 'inbound-rtp' && sub.tracks.get(r.mid);
      if (info && info.participant === participant && info.source === source) return r.packetsReceived;
    }
    return -1;
  }, { participant, source });
}

test('a moderator mutes and removes another page, which shows why', async () => {
  const mod = await newPage(browser, { width: 900, height: 600 });
  await mod.goto(roomUrl(server.url, 'board', 'Mo', { token: token('board', 'Mo', 'moderator') }));
  const guest = await newPage(browser);
  await guest.goto(roomUrl(server.url, 'board', 'Gus'));
  const guestId = await ownId(guest);
  await ownId(mod);
  // Only the moderator sees the panel.
  await mod.waitForSelector(`#moderator-panel .mod-member[data-id="${guestId}"]`, { timeout: 15_000 });
  assert.equal(await guest.$eval('#moderator-panel', (p) => p.hidden), true);

  await waitFor(async () => (await packets(mod, guestId, 'microphone')) > 0, { what: "Gus's microphone reaching Mo" });
  await mod.click(`#moderator-panel .mod-member[data-id="${guestId}"] button:text("Mute mic")`);
  await waitFor(() => guest.$eval('#toast', (t) => !t.hidden && t.textContent.includes('muted your microphone')), {
    what: "Gus's page saying a moderator muted its microphone",
  });
  // The server stops forwarding: Mo's packet count from Gus's microphone stops growing.
  await waitFor(async () => {
    const a = await packets(mod, guestId, 'microphone');
    await new Promise((r) => setTimeout(r, 1000));
    return a === (await packets(mod, guestId, 'microphone'));
  }, { timeout: 20_000, what: "Gus's microphone no longer forwarded" });

  await mod.click(`#moderator-panel .mod-member[data-id="${guestId}"] button:text("Remove")`);
  await waitFor(() => guest.$eval('#goodbye', (g) => !g.hidden), { what: "Gus's page leaving the meeting" });
  assert.equal(await guest.$eval('#goodbye-title', (h) => h.textContent), 'You were removed');
  assert.match(await guest.$eval('#goodbye-text', (p) => p.textContent), /moderator removed you/);
  await waitFor(() => mod.$$eval('#moderator-panel .mod-member', (rows) => rows.length === 0), {
    what: "Gus gone from Mo's panel",
  });
  await mod.context().close();
  await guest.context().close();
});
