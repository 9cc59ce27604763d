#!/usr/bin/env node
// Signaling benchmark of issue #2 (not a test): the tutorial's namespace `/` of a release-built
// sfu-lite, driven by the official socket.io-client v4.
//
// For each K in --ks (default 10,100,500), on a fresh server:
//   1. K clients connect one by one (each waits for its `ready`); every join also sends the
//      whole roster to all others (`change`), as the tutorial's protocol demands.
//   2. Every client sends N direct `message`s to its neighbour; all are counted on arrival.
//   3. All K clients disconnect at once; the server must stay up and drop to 0 sockets.
// Server CPU comes from /proc/PID/stat (utime+stime, clock ticks) and, more precisely, from
// the sum of /proc/PID/task/*/schedstat run times (ns). Prints a markdown table.
//
// Usage: node scripts/bench-signaling.mjs [--ks 10,100,500] [--transport polling|websocket]
// Binary: SFU_BIN, default target/release/sfu-lite. Run on loopback only, e.g.
//   unshare --net sh -c 'ip link set lo up && exec "$@"' sh node scripts/bench-signaling.mjs

import { createRequire } from 'node:module';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'tests/js/package.json'));
const { io } = require('socket.io-client');
process.env.SFU_BIN ||= path.join(root, 'target/release/sfu-lite');
const { startServer } = await import(path.join(root, 'tests/js/lib/server.mjs'));

const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const KS = opt('ks', '10,100,500').split(',').map(Number);
const TRANSPORT = opt('transport', 'websocket');
const TICK_US = 1e6 / 100; // USER_HZ is 100 on Linux
const PHASE_TIMEOUT_MS = 120_000;

function cpu(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // thread gone meanwhile
    }
  }
  return { us: ticks * TICK_US, schedUs: ns / 1000 };
}

function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => Number(status.match(new RegExp(`${key}:\\s+(\\d+)`))[1]);
  return { rssMiB: kb('VmRSS') / 1024, peakMiB: kb('VmHWM') / 1024 };
}

function delta(a, b) {
  return { us: b.us - a.us, schedUs: b.schedUs - a.schedUs };
}

function until(what, check, timeoutMs = PHASE_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      if (check()) return resolve();
      if (Date.now() - started > timeoutMs) return reject(new Error(`timeout: ${what}`));
      setTimeout(poll, 5);
    };
    poll();
  });
}

async function gauge(url, name) {
  const text = await (await fetch(url + 'metrics')).text();
  const m = text.match(new RegExp(`^sfu_${name} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

async function run(K) {
  const server = await startServer({ env: { RUST_LOG: 'warn' } });
  const pid = server.proc.pid;
  const clients = [];
  try {
    // 1. joins, one by one
    const c0 = cpu(pid);
    for (let i = 0; i < K; i++) {
      const socket = io(server.url, {
        forceNew: true,
        reconnection: false,
        transports: TRANSPORT === 'websocket' ? ['websocket'] : ['polling', 'websocket'],
      });
      const client = { socket, id: null, roster: 0, received: 0 };
      socket.on('change', (persons) => (client.roster = persons.length));
      socket.on('message', () => client.received++);
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`client ${i}: no ready`)), 30_000);
        socket.once('ready', (id, persons) => {
          clearTimeout(timer);
          client.id = id;
          client.roster = persons.length;
          resolve();
        });
      });
      clients.push(client);
    }
    await until('every client saw the full roster', () => clients.every((c) => c.roster === K));
    const c1 = cpu(pid);
    const join = delta(c0, c1);
    const memJoined = memory(pid);

    // 2. relayed messages
    const N = Math.min(200, Math.ceil(10_000 / K));
    const sent = K * N;
    for (let round = 0; round < N; round++) {
      for (let i = 0; i < K; i++) {
        const to = clients[(i + 1) % K].id;
        clients[i].socket.emit('message', { to, type: 'text', content: `m${round}` });
      }
      // Yield so the sockets flush as they go, as real clients would.
      if (round % 10 === 9) await new Promise((r) => setImmediate(r));
    }
    const received = () => clients.reduce((n, c) => n + c.received, 0);
    let lost = 0;
    try {
      await until('all messages received', () => received() >= sent, 60_000);
    } catch {
      lost = sent - received();
    }
    const c2 = cpu(pid);
    const relay = delta(c1, c2);

    // 3. everyone leaves at once
    for (const c of clients) c.socket.close();
    let sockets = NaN;
    const started = Date.now();
    while (Date.now() - started < 60_000) {
      sockets = await gauge(server.url, 'sockets');
      if (sockets === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const alive = server.proc.exitCode === null && (await fetch(server.url + 'healthz')).ok;
    const c3 = cpu(pid);
    const storm = delta(c2, c3);
    const mem = memory(pid);
    const code = await server.stop();
    return { K, N, sent, lost, join, relay, storm, memJoined, mem, sockets, alive, code };
  } catch (e) {
    for (const c of clients) c.socket.close();
    await server.stop().catch(() => {});
    throw e;
  }
}

const fmt = (x, digits = 0) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

const rows = [];
for (const K of KS) {
  const r = await run(K);
  rows.push(r);
  process.stderr.write(`K=${K} done\n`);
}

console.log(`transport: ${TRANSPORT}; CPU = server process, schedstat (stat ticks in brackets)\n`);
console.log('| K | CPU per join | messages sent | lost | CPU per relayed message | RSS at K | peak RSS | all disconnect at once |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  const perJoin = `${fmt(r.join.schedUs / r.K / 1000, 3)} ms [${fmt(r.join.us / r.K / 1000, 2)}]`;
  const perMsg = `${fmt(r.relay.schedUs / r.sent, 1)} µs [${fmt(r.relay.us / r.sent, 1)}]`;
  const storm = `${r.alive ? 'alive' : 'DEAD'}, ${r.sockets} sockets left, ${fmt(r.storm.schedUs / 1000, 0)} ms CPU, exit ${r.code}`;
  console.log(`| ${r.K} | ${perJoin} | ${r.sent} | ${r.lost} | ${perMsg} | ${fmt(r.memJoined.rssMiB, 1)} MiB | ${fmt(r.mem.peakMiB, 1)} MiB | ${storm} |`);
}
