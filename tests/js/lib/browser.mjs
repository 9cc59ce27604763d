// Real browsers for the end-to-end tests: Chromium through playwright-core, Firefox ESR
// through puppeteer-core (WebDriver BiDi), both with fake camera/microphone and loopback ICE.
// Plus bounded polling and getStats() readers shared by the browser tests.

import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  // getDisplayMedia: pick the (fake) screen without a picker.
  '--auto-select-desktop-capture-source=Entire screen',
  '--enable-usermedia-screen-capturing',
  // Pages join with ?autojoin=1, without a click, and must still play sound.
  '--autoplay-policy=no-user-gesture-required',
];

/** One Chromium process; use `newPage(browser)` per participant (separate contexts). */
export async function launchChromium({ args = [] } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    timeout: 60_000,
  });
}

/** A page in its own context (own cookies/storage), so pages act as different people. */
export async function newPage(browser, { width = 640, height = 480 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') console.error(`[page ${msg.type()}] ${msg.text()}`);
  });
  return page;
}

/** Firefox ESR with fake media and loopback ICE; returns {browser, close()}. */
export async function launchFirefox() {
  const profile = mkdtempSync(join(tmpdir(), 'sfu-lite-ff-'));
  const browser = await puppeteer.launch({
    browser: 'firefox',
    protocol: 'webDriverBiDi',
    executablePath: process.env.FIREFOX_BIN ?? '/usr/bin/firefox-esr',
    headless: true,
    userDataDir: profile,
    timeout: 60_000,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'media.peerconnection.ice.loopback': true,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
      'permissions.default.camera': 1,
      'permissions.default.microphone': 1,
      'media.autoplay.default': 0,
      'media.autoplay.blocking_policy': 0,
    },
  });
  return {
    browser,
    async close() {
      await browser.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Polls `probe` until it returns a truthy value or `timeout` ms pass; returns that value.
 * On timeout throws with `what` and the last value seen, so a failure says what was missing.
 */
export async function waitFor(probe, { timeout = 15_000, interval = 150, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${fmt(last)}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

function fmt(v) {
  if (v instanceof Error) return v.message;
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

/**
 * Inbound media of a page as seen by its subscriber PeerConnection, keyed by
 * `${participant}/${source}`: {kind, framesDecoded, frameWidth, frameHeight, freezeCount,
 * totalFreezesDuration (s), totalSamplesReceived}. Works on playwright and puppeteer pages alike.
 */
export function inbound(page) {
  return page.evaluate(async () => {
    const sub = window.sfuLite?.subscriber;
    if (!sub) return {};
    const out = {};
    const report = await sub.pc.getStats();
    for (const r of report.values()) {
      if (r.type !== 'inbound-rtp') continue;
      const info = sub.tracks.get(r.mid);
      if (!info) continue;
      out[`${info.participant}/${info.source}`] = {
        kind: r.kind,
        framesDecoded: r.framesDecoded ?? 0,
        frameWidth: r.frameWidth ?? 0,
        frameHeight: r.frameHeight ?? 0,
        freezeCount: r.freezeCount ?? 0,
        totalFreezesDuration: r.totalFreezesDuration ?? 0,
        totalSamplesReceived: r.totalSamplesReceived ?? 0,
      };
    }
    return out;
  });
}

/**
 * What a publishing page sends of its camera, by rid: {frameWidth, framesPerSecond, bytesSent,
 * active, qualityLimitationReason}. A failed wait on a layer prints it: a busy machine makes
 * Chromium scale its layers down or drop the top one.
 */
export function outbound(page, source = 'camera') {
  return page.evaluate(async (source) => {
    const t = window.sfuLite?.publisher?.transceivers.get(source);
    if (!t) return {};
    const active = Object.fromEntries(t.sender.getParameters().encodings.map((e) => [e.rid ?? '', e.active !== false]));
    const out = {};
    for (const r of (await t.sender.getStats()).values()) {
      if (r.type !== 'outbound-rtp') continue;
      out[r.rid ?? ''] = {
        frameWidth: r.frameWidth ?? 0,
        framesPerSecond: r.framesPerSecond ?? 0,
        bytesSent: r.bytesSent ?? 0,
        active: active[r.rid ?? ''],
        qualityLimitationReason: r.qualityLimitationReason,
      };
    }
    return out;
  }, source);
}

/** The page's own participant id once it has joined. */
export function ownId(page) {
  return waitFor(() => page.evaluate(() => window.sfuLite?.id), { what: 'join acknowledgement' });
}

/**
 * Waits until `page` decodes rising video (and, if `audio`, rising audio samples) from each of
 * `ids` for `source`. Two samples: counters must grow between them.
 */
export async function waitForMedia(page, ids, { source = 'camera', audio = true, timeout = 20_000, size } = {}) {
  const first = await waitFor(async () => {
    const s = await inbound(page);
    const ok = ids.every((id) => {
      const v = s[`${id}/${source}`];
      const a = s[`${id}/microphone`];
      const sized = !size || (v && v.frameWidth === size[0] && v.frameHeight === size[1]);
      return v && v.framesDecoded > 0 && sized && (!audio || (a && a.totalSamplesReceived > 0));
    });
    return ok && s;
  }, { timeout, what: `${source} media from ${ids.join(', ')}` });
  await waitFor(async () => {
    const s = await inbound(page);
    return ids.every((id) => {
      const v = s[`${id}/${source}`];
      const a = s[`${id}/microphone`];
      return v.framesDecoded > first[`${id}/${source}`].framesDecoded &&
        (!audio || a.totalSamplesReceived > first[`${id}/microphone`].totalSamplesReceived);
    }) && s;
  }, { timeout: 10_000, what: `rising ${source} counters from ${ids.join(', ')}` });
  return first;
}

/** URL of the meeting page for one participant, small and cheap. */
export function roomUrl(base, room, name, extra = {}) {
  const q = new URLSearchParams({ room, name, autojoin: '1', lowres: '1', ...extra });
  return new URL(`/?${q}`, base).href;
}

/** The server's gauges from /metrics: {sockets, rooms, participants, peer_connections, ...}. */
export async function gauges(baseUrl) {
  const text = await (await fetch(new URL('/metrics', baseUrl))).text();
  const names = new Set([...text.matchAll(/^# TYPE sfu_(\w+) gauge$/gm)].map((m) => m[1]));
  const out = {};
  for (const m of text.matchAll(/^sfu_(\w+) (-?\d+)$/gm)) if (names.has(m[1])) out[m[1]] = Number(m[2]);
  return out;
}

/** Waits until every gauge of the server is back to zero (all pages gone). */
export function waitForIdleServer(baseUrl, timeout = 15_000) {
  return waitFor(async () => {
    const g = await gauges(baseUrl);
    return Object.keys(g).length > 0 && Object.values(g).every((v) => v === 0) && g;
  }, { timeout, what: 'every server gauge back to zero' });
}

/** The local UDP port of a page's subscriber connection (its selected candidate pair). */
export function subscriberPort(page) {
  return waitFor(() => page.evaluate(async () => {
    const sub = window.sfuLite?.subscriber;
    if (!sub) return null;
    const report = await sub.pc.getStats();
    const all = [...report.values()];
    const transport = all.find((r) => r.type === 'transport' && r.selectedCandidatePairId);
    const pair = transport && report.get(transport.selectedCandidatePairId);
    const local = pair && report.get(pair.localCandidateId);
    return local?.port ?? null;
  }), { what: "the subscriber connection's selected local port" });
}
