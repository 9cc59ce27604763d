// A Firefox ESR page and a Chromium page in one room decode each other's camera and microphone.

import { test, before, after } from 'node:test';
import { startServer } from './lib/server.mjs';
import { launchChromium, launchFirefox, newPage, waitForMedia, ownId, roomUrl, waitForIdleServer } from './lib/browser.mjs';

let server;
let chromium;
let firefox;

before(async () => {
  server = await startServer();
  chromium = await launchChromium();
  firefox = await launchFirefox();
});

after(async () => {
  await chromium?.close();
  await firefox?.close();
  await server?.stop();
});

test('firefox and chromium in one room decode each other', async () => {
  const ff = await firefox.browser.newPage();
  ff.on('pageerror', (err) => console.error(`[firefox page error] ${err.message}`));
  await ff.goto(roomUrl(server.url, 'mixed', 'Firefox'));
  const ffId = await ownId(ff);
  const cr = await newPage(chromium);
  await cr.goto(roomUrl(server.url, 'mixed', 'Chromium'));
  const crId = await ownId(cr);
  await waitForMedia(cr, [ffId], { timeout: 30_000 });
  await waitForMedia(ff, [crId], { timeout: 30_000 });
  await ff.close();
  await cr.close();
  await waitForIdleServer(server.url);
});
