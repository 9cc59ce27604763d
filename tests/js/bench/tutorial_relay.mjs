// Benchmark of the tutorial's namespace `/` (not a test): N official socket.io v4 clients,
// spread over the given server URLs in turn, arrive one after the other, then each sends
// messages to the others in turn, paced. Prints one JSON line: arrival time (connect → ready,
// and until every client's roster has everyone), message latency p50/p99, and the CPU the
// given processes (sfu-lite nodes, Redis) spent per arrival and per relayed message.
//
//   node tests/js/bench/tutorial_relay.mjs URL[,URL...] PIDS(comma) [CLIENTS] [MESSAGES_EACH]
//
// scripts/bench-cluster.sh runs it on one node and on three.

import { readFileSync } from 'node:fs';
import { io } from 'socket.io-client';

const [urls, pids, clientsArg = '60', messagesArg = '20'] = process.argv.slice(2);
const URLS = urls.split(',');
const PIDS = pids.split(',').filter(Boolean).map(Number);
const CLIENTS = Number(clientsArg);
const MESSAGES = Number(messagesArg);
const PACE_MS = 10; // between two sends of one round
const BOUND_MS = 30_000;

/** CPU seconds of every process in PIDS (utime + stime, in clock ticks of 1/100 s). */
function cpu() {
  let ticks = 0;
  for (const pid of PIDS) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100;
}

function pct(values, p) {
  const v = [...values].sort((a, b) => a - b);
  return v.length ? v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))] : null;
}

function bounded(promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${BOUND_MS} ms`)), BOUND_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

const clients = [];
const arrivalMs = [];
const latencyMs = [];
let received = 0;
let allReceived;
const everyone = new Promise((resolve) => (allReceived = resolve));

const cpu0 = cpu();
const t0 = performance.now();
for (let i = 0; i < CLIENTS; i++) {
  const socket = io(URLS[i % URLS.length], { forceNew: true, reconnection: false, transports: ['websocket'] });
  const start = performance.now();
  const [id] = await bounded(new Promise((resolve) => socket.once('ready', (...a) => resolve(a))), 'ready');
  arrivalMs.push(performance.now() - start);
  socket.ownId = id;
  socket.roster = [];
  socket.on('change', (persons) => (socket.roster = persons));
  socket.on('message', (m) => {
    latencyMs.push(performance.now() - m.sent);
    if (++received === CLIENTS * MESSAGES) allReceived();
  });
  clients.push(socket);
}
// Every roster complete: the last arrival has reached every node's sockets.
let everyoneSeen;
await bounded(
  new Promise((resolve) => {
    const check = () => clients.every((c) => c === clients.at(-1) || c.roster.length === CLIENTS) && resolve();
    const timer = setInterval(check, 5);
    check();
    everyoneSeen = () => clearInterval(timer);
  }),
  'complete rosters',
);
everyoneSeen();
const arrivalsSpan = performance.now() - t0;
const cpu1 = cpu();

// Each round, every client messages the next one (i → i + round), so every pair crosses
// nodes as often as it would by chance.
for (let round = 1; round <= MESSAGES; round++) {
  for (let i = 0; i < CLIENTS; i++) {
    const to = clients[(i + round) % CLIENTS].ownId;
    clients[i].emit('message', { to, sent: performance.now(), content: 'x'.repeat(200) });
  }
  await new Promise((r) => setTimeout(r, PACE_MS));
}
await bounded(everyone, 'every message');
const cpu2 = cpu();
for (const c of clients) c.close();

console.log(
  JSON.stringify({
    urls: URLS.length,
    clients: CLIENTS,
    arrival_ms_p50: pct(arrivalMs, 50),
    arrival_ms_p99: pct(arrivalMs, 99),
    all_rosters_complete_ms: Math.round(arrivalsSpan),
    cpu_ms_per_arrival: ((cpu1 - cpu0) * 1000) / CLIENTS,
    messages: received,
    latency_ms_p50: pct(latencyMs, 50),
    latency_ms_p99: pct(latencyMs, 99),
    cpu_us_per_message: ((cpu2 - cpu1) * 1e6) / received,
  }),
);
process.exit(0);
