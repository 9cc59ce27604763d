// Chromium pages whose UDP is blocked still get media, through TURN over TCP:
// - through a real coturn (use-auth-secret) with the credentials from the join ack;
// - through the embedded relay on the server's own HTTP port.
//
// How "blocked" is made real: the server listens (HTTP and media) on 127.0.0.2 and announces
// 127.0.0.2; Chromium's only address is 127.0.0.1. One nftables rule on the input hook drops
// every UDP datagram from 127.0.0.1, so the pages' direct path (and any UDP they send at all)
// is gone, while a relay's UDP (from 127.0.0.2 for the embedded one, 127.0.0.3 for coturn's
// relay address) still reaches the media port. The pages keep iceTransportPolicy "all": they
// try the direct path and fail, and the rule's counter proves they tried.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './lib/server.mjs';
import { launchChromium, newPage, waitFor, waitForMedia, ownId, roomUrl, waitForIdleServer } from './lib/browser.mjs';

const SERVER_IP = '127.0.0.2';
const COTURN_RELAY_IP = '127.0.0.3';
const SECRET = 'browser-turn-test-secret';
const NFT_TABLE = 'sfu_turn_test';
let browser;

function blockPageUdp() {
  execFileSync('nft', ['-f', '-'], {
    input: `table ip ${NFT_TABLE} {
      chain input {
        type filter hook input priority 0; policy accept;
        ip saddr 127.0.0.1 meta l4proto udp counter drop
      }
    }\n`,
  });
}

/** UDP datagrams from the pages that the rule dropped. */
function droppedUdp() {
  const out = execFileSync('nft', ['list', 'table', 'ip', NFT_TABLE]).toString();
  return Number(out.match(/counter packets (\d+)/)?.[1] ?? 0);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** coturn on 127.0.0.1, TURN over TCP only, relaying from 127.0.0.3. */
async function startCoturn() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sfu-lite-coturn-'));
  const proc = spawn('turnserver', [
    '-n', '--listening-ip=127.0.0.1', `--relay-ip=${COTURN_RELAY_IP}`, `--listening-port=${port}`,
    '--use-auth-secret', `--static-auth-secret=${SECRET}`, '--realm=sfu-lite.test',
    '--allow-loopback-peers', '--no-cli', '--no-tls', '--no-dtls', '--no-udp',
    `--userdb=${join(dir, 'turndb')}`, `--pidfile=${join(dir, 'pid')}`, '--log-file=stdout', '--simple-log',
  ], { stdio: 'ignore' });
  // coturn prints nothing machine-readable when ready: try its port, within a bound.
  await waitFor(() => new Promise((resolve) => {
    const c = connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  }), { timeout: 10_000, what: 'coturn listening' });
  return {
    url: `turn:127.0.0.1:${port}?transport=tcp`,
    stop() {
      proc.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The server on 127.0.0.2 with `env` config; its page base URL. */
async function startSfu(env) {
  const server = await startServer({
    args: ['--listen', `${SERVER_IP}:0`],
    env: { SFU_LITE_MEDIA_PUBLIC_IPS: `["${SERVER_IP}"]`, ...env },
  });
  return { server, base: `http://${SERVER_IP}:${server.port}/` };
}

/** The remote and local candidate types of the page's connected pairs, both connections. */
function selectedTypes(page) {
  return page.evaluate(async () => {
    const out = [];
    for (const peer of [window.sfuLite.publisher, window.sfuLite.subscriber]) {
      const stats = await peer.pc.getStats();
      for (const t of stats.values()) {
        if (t.type !== 'transport' || !t.selectedCandidatePairId) continue;
        const pair = stats.get(t.selectedCandidatePairId);
        out.push(stats.get(pair.localCandidateId).candidateType);
      }
    }
    return out;
  });
}

/** The server's connection counts by remote candidate type. */
async function candidateTypes(base) {
  const text = await (await fetch(new URL('/metrics', base))).text();
  const out = {};
  for (const m of text.matchAll(/^sfu_connections_by_candidate_type_total\{type="(\w+)"\} (\d+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/** Two pages in a room, each decoding the other's video and audio through a relay. */
async function twoPagesThroughTurn(base, t) {
  const dropsBefore = droppedUdp();
  const started = Date.now();
  const pages = [];
  for (const name of ['Ada', 'Grace']) {
    const page = await newPage(browser);
    await page.goto(roomUrl(base, 'turn-room', name));
    pages.push({ page, id: await ownId(page) });
  }
  await waitForMedia(pages[0].page, [pages[1].id], { timeout: 30_000 });
  await waitForMedia(pages[1].page, [pages[0].id], { timeout: 30_000 });
  t.diagnostic(`both pages decoding through TURN ${Date.now() - started} ms after the first page load`);
  for (const { page } of pages) {
    const types = await selectedTypes(page);
    assert.deepEqual(types, ['relay', 'relay'], 'both connections of each page go through the relay');
  }
  assert.ok(droppedUdp() > dropsBefore, 'the pages tried the direct UDP path and it was dropped');
  const byType = await candidateTypes(base);
  assert.equal(byType.host ?? 0, 0, `no direct connection on the server: ${JSON.stringify(byType)}`);
  assert.equal((byType.relay ?? 0) + (byType.prflx ?? 0), 4, `four relayed connections: ${JSON.stringify(byType)}`);
  t.diagnostic(`server connections by remote candidate type: ${JSON.stringify(byType)}`);
  for (const { page } of pages) await page.context().close();
}

before(async () => {
  blockPageUdp();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  try {
    execFileSync('nft', ['delete', 'table', 'ip', NFT_TABLE]);
  } catch {
    // The namespace goes with the test run anyway.
  }
});

test('pages with UDP blocked decode each other through coturn over TCP', async (t) => {
  const coturn = await startCoturn();
  const { server, base } = await startSfu({
    SFU_LITE_TURN_URLS: `["${coturn.url}"]`,
    SFU_LITE_TURN_SECRET: SECRET,
  });
  try {
    await twoPagesThroughTurn(base, t);
    await waitForIdleServer(base);
  } finally {
    await server.stop();
    coturn.stop();
  }
});

test('pages with UDP blocked decode each other through the embedded relay on the HTTP port', async (t) => {
  const { server, base } = await startSfu({ SFU_LITE_TURN_EMBEDDED: 'true' });
  try {
    await twoPagesThroughTurn(base, t);
    await waitForIdleServer(base);
  } finally {
    await server.stop();
  }
});
