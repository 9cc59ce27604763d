// The official socket.io clients of both protocol generations against the sfu-lite binary:
// socket.io-client v4 (EIO4) and v2 (EIO3, the tutorial's era) get ready/change/message on
// `/`, and a v2 client can join a room on `/rooms`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io as ioV4 } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { startServer } from './lib/server.mjs';
import { WAIT_MS, next, ack, record } from './lib/events.mjs';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

const v4 = (ns = '') => ioV4(server.url + ns, { forceNew: true, reconnection: false });
const v2 = (ns = '') =>
  ioV2(server.url + ns, { forceNew: true, reconnection: false, transports: ['polling', 'websocket'] });

test('v4 and v2 clients both get ready, change and message on /', async () => {
  const a = v4();
  const [aId, persons1] = await next(a, 'ready');
  assert.equal(typeof aId, 'string');
  assert.deepEqual(persons1.find((p) => p.id === aId) !== undefined, true);

  const changeSeenByA = next(a, 'change');
  const b = v2();
  const [bId, persons2] = await next(b, 'ready');
  const ids = persons2.map((p) => p.id);
  assert.ok(ids.includes(aId) && ids.includes(bId), JSON.stringify(persons2));
  const seqs = persons2.map((p) => p.seq);
  assert.equal(new Set(seqs).size, seqs.length, 'seqs are unique');
  const [change] = await changeSeenByA;
  assert.deepEqual(change, persons2);

  // v2 → v4
  const atA = next(a, 'message');
  b.emit('message', { to: aId, type: 'text', content: 'from v2' });
  const [m1] = await atA;
  assert.equal(m1.from, bId);
  assert.equal(m1.to, aId);
  assert.equal(m1.type, 'text');
  assert.equal(m1.content, 'from v2');
  assert.match(m1.time, /^\d{1,2}:\d{1,2}:\d{1,2}$/);

  // v4 → v2
  const atB = next(b, 'message');
  a.emit('message', { to: bId, type: 'text', content: { sdp: 'v=0' } });
  const [m2] = await atB;
  assert.equal(m2.from, aId);
  assert.deepEqual(m2.content, { sdp: 'v=0' });

  // The tutorial page's `bye`: b is disconnected and a sees it leave.
  const changeAfterBye = next(a, 'change');
  const bGone = next(b, 'disconnect');
  b.emit('bye');
  await bGone;
  const [after] = await changeAfterBye;
  assert.deepEqual(after.map((p) => p.id), [aId]);
  a.close();
});

// What apps built on the tutorial send: their own fields, no `type`, no `content`, nested data,
// numbers JSON.parse keeps exactly, unicode. The tutorial's server relays the body it got
// with `from` and `time` set; so must we, both directions between the generations.
const bodies = (to) => [
  { to, n: 1, ts: 1733000000123 },
  { to, type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' },
  { to, content: 'no type' },
  { to, type: 'no content' },
  {
    to,
    type: 'candidate',
    candidate: { candidate: 'candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host', sdpMid: '0', sdpMLineIndex: 0 },
    list: [1, 'two', [3, { four: null }], true, false, {}],
    numbers: [0, -0.5, 0.30000000000000004, 0.1234567890123456, 2.2250738585072014e-308, 5e-324,
      1.7976931348623157e308, 9007199254740991, -9007199254740991, 1e21, 123456789.12345679],
    unicode: '聊天室 😀 \u202e \u0000 "quoted" \\ back',
    '键': { 'nested 🙂': { deeper: ['x'] } },
  },
  { to, from: 'forged', time: 'forged', type: 'text', content: 'from and time are the server\'s' },
];

test('any body whose `to` is a string arrives as sent, plus from and time, v4 and v2 both ways', async () => {
  const a = v4();
  const [aId] = await next(a, 'ready');
  const b = v2();
  const [bId] = await next(b, 'ready');
  for (const [from, fromId, to, toId] of [[a, aId, b, bId], [b, bId, a, aId]]) {
    for (const body of bodies(toId)) {
      const arrived = next(to, 'message');
      from.emit('message', body);
      const [m] = await arrived;
      assert.match(m.time, /^\d{1,2}:\d{1,2}:\d{1,2}$/);
      assert.deepEqual(m, { ...body, from: fromId, time: m.time });
      // Byte for byte, key order included: the body's keys, then from and time unless the
      // client had them (the tutorial's `body.from = ...` keeps their place).
      assert.equal(JSON.stringify(m), JSON.stringify({ ...body, from: fromId, time: m.time }));
    }
  }
  a.close();
  b.close();
});

test('a body that cannot be relayed is refused with error, to its sender only', async () => {
  const a = v4();
  const [aId] = await next(a, 'ready');
  const b = v2();
  const [bId] = await next(b, 'ready');
  const atB = record(b, 'message');
  const cases = [
    ['a string', 'hello', 'bad_request'],
    ['an array', [bId], 'bad_request'],
    ['null', null, 'bad_request'],
    ['no to', { type: 'text', content: 'x' }, 'bad_request'],
    ['a number to', { to: 5, content: 'x' }, 'bad_request'],
    ['an object to', { to: { id: bId }, content: 'x' }, 'bad_request'],
    ['an unknown to', { to: 'nobody', content: 'x' }, 'unknown_peer'],
    ['an oversized body', { to: bId, content: 'x'.repeat(70000) }, 'payload_too_large'],
  ];
  for (const client of [a, b]) {
    for (const [what, body, code] of cases) {
      const err = next(client, 'error');
      client.emit('message', body);
      const [e] = await err;
      assert.equal(e.code, code, `${what}: ${JSON.stringify(e)}`);
      assert.equal(e.event, 'message', what);
    }
  }
  // A message to oneself reaches nobody, as the tutorial's `socket.to(own id)` excludes the
  // sender; it is not an error either.
  const atA = record(a, 'message');
  const errorsA = record(a, 'error');
  assert.deepEqual(await ack(a, 'message', { to: aId, content: 'me' }), {});
  const marker = next(b, 'message');
  a.emit('message', { to: bId, content: 'marker' });
  await marker;
  assert.deepEqual(atB.map((m) => m.content), ['marker']);
  assert.deepEqual(atA, []);
  assert.deepEqual(errorsA, []);
  a.close();
  b.close();
});

test('refusals reach both generations as one error shape', async () => {
  const a = v4();
  await next(a, 'ready');
  const err4 = next(a, 'error');
  a.emit('frobnicate', {});
  const [e4] = await err4;
  assert.deepEqual(Object.keys(e4).sort(), ['code', 'event', 'message']);
  assert.equal(e4.code, 'unknown_event');
  assert.equal(e4.event, 'frobnicate');

  const b = v2();
  await next(b, 'ready');
  const err2 = next(b, 'error');
  b.emit('message', { to: 'nobody', type: 'text', content: 'x' });
  const [e2] = await err2;
  assert.equal(e2.code, 'unknown_peer');
  assert.equal(e2.event, 'message');
  a.close();
  b.close();
});

test('a v2 client joins a room on /rooms and chats with a v4 client', async () => {
  const old = v2('rooms');
  await next(old, 'connect');
  const joinedOld = await ack(old, 'join', { room: 'mixed', name: 'Old' });
  assert.equal(joinedOld.room, 'mixed');
  assert.deepEqual(joinedOld.members, []);
  assert.ok(Array.isArray(joinedOld.ice_servers));

  const fresh = v4('rooms');
  await next(fresh, 'connect');
  const joinedSeen = next(old, 'joined');
  const joinedFresh = await ack(fresh, 'join', { room: 'mixed', name: 'New' });
  assert.deepEqual(joinedFresh.members.map((m) => m.name), ['Old']);
  const [member] = await joinedSeen;
  assert.equal(member.id, joinedFresh.id);
  assert.equal(member.name, 'New');

  const atOld = next(old, 'message');
  fresh.emit('message', { content: 'hi' });
  const [m] = await atOld;
  assert.equal(m.from, joinedFresh.id);
  assert.equal(m.name, 'New');
  assert.equal(m.content, 'hi');

  const left = next(fresh, 'left');
  old.emit('leave');
  assert.deepEqual((await left)[0], { id: joinedOld.id });

  const refused = await ack(old, 'message', { content: 'not a member now' });
  assert.equal(refused.error.code, 'not_in_room');
  old.close();
  fresh.close();
});

test('when / is full, v4 and v2 get namespace_full there, and a v2 client still joins a room', async () => {
  const own = await startServer({ env: { SFU_LITE_SIGNALING_MAX_TUTORIAL_SOCKETS: '1' } });
  const opts = { forceNew: true, reconnection: false };
  const first = ioV4(own.url, opts);
  await next(first, 'ready');
  const late4 = ioV4(own.url, opts);
  const [e4] = await next(late4, 'connect_error');
  assert.match(e4.message, /^namespace_full: /);
  const late2 = ioV2(own.url, { ...opts, transports: ['polling', 'websocket'] });
  const [e2] = await next(late2, 'error');
  assert.match(e2?.message ?? String(e2), /^namespace_full: /);
  // A v2 (EIO3) connection is always put on `/` too; that refusal leaves `/rooms` usable.
  const roomie = ioV2(own.url + 'rooms', { ...opts, transports: ['polling', 'websocket'] });
  await next(roomie, 'connect');
  const joined = await ack(roomie, 'join', { room: 'while-full', name: 'Old' });
  assert.equal(joined.room, 'while-full');
  for (const c of [first, late4, late2, roomie]) c.close();
  assert.equal(await own.stop(), 0);
});

test('on SIGTERM clients are told server_shutdown, then disconnected', async () => {
  const own = await startServer();
  const client = ioV4(own.url, { forceNew: true, reconnection: false });
  await next(client, 'ready');
  const notice = next(client, 'error');
  const gone = next(client, 'disconnect');
  const code = await own.stop();
  assert.equal((await notice)[0].code, 'server_shutdown');
  assert.equal((await gone)[0], 'io server disconnect');
  assert.equal(code, 0);
});
