// Nobody can act as somebody else. The ids users see (`ready`/`change` on `/`; the join ack,
// `joined` and chat `from` on `/rooms`) are public ids, not Engine.IO session ids, so an
// attacker who addresses a session with one, over raw polling requests or a raw WebSocket
// upgrade, is refused at every step: a forged event, a GET that would steal the victim's
// messages, a close packet, an upgrade to the attacker's WebSocket. Victims are the official
// clients (v4 on EIO=4, v2 on EIO=3) kept on the polling transport, where all of this used to
// work; afterwards the victim is still connected and still sends and receives, and no third
// user got anything forged.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io as ioV4 } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { startServer } from './lib/server.mjs';
import { WAIT_MS, next, ack, record } from './lib/events.mjs';
import { eioPath, poll, rawWebSocket } from './lib/raw_eio.mjs';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

const opts = { forceNew: true, reconnection: false };
const clients = [
  { name: 'v4', eio: 4, polling: (ns = '') => ioV4(server.url + ns, { ...opts, transports: ['polling'] }) },
  { name: 'v2', eio: 3, polling: (ns = '') => ioV2(server.url + ns, { ...opts, transports: ['polling'] }) },
];
const v4 = (ns = '') => ioV4(server.url + ns, opts);

/** The refusal engineioxide gives a request naming a session that does not exist. */
function assertUnknownSession(res, step) {
  assert.equal(res.status, 400, `${step}: ${JSON.stringify(res)}`);
  assert.equal(JSON.parse(res.text).message, 'Session ID unknown', `${step}: ${res.text}`);
}

/** Every takeover step against `publicId`, as protocol `eio`; each must be refused. */
async function attack({ eio, publicId, forged }) {
  const post = await poll(server.url, { eio, sid: publicId, method: 'POST', packets: forged, timeoutMs: WAIT_MS });
  assertUnknownSession(post, 'POST of a forged event');

  const steal = await poll(server.url, { eio, sid: publicId, method: 'GET', timeoutMs: WAIT_MS });
  assertUnknownSession(steal, 'GET of the victim\'s messages');

  const close = await poll(server.url, { eio, sid: publicId, method: 'POST', packets: ['1'], timeoutMs: WAIT_MS });
  assertUnknownSession(close, 'POST of a close packet');

  const ws = await rawWebSocket(server.url, eioPath(eio, publicId, 'websocket'), WAIT_MS);
  if (ws.status === 101) {
    ws.send('2probe');
    let timer;
    const ended = await Promise.race([
      ws.closed.then(() => 'closed'),
      new Promise((resolve) => {
        timer = setTimeout(() => resolve('open'), WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
    if (ws.frames.includes('3probe')) ws.send('5'); // what an attacker would do next
    ws.close();
    assert.deepEqual(ws.frames, [], 'the upgrade answered the probe');
    assert.equal(ended, 'closed', 'the upgraded connection stayed open');
  }
}

for (const { name, eio, polling } of clients) {
  test(`a ${name} socket on / cannot be steered through its roster id`, async () => {
    const victim = polling();
    const [victimId] = await next(victim, 'ready');
    const dropped = record(victim, 'disconnect');
    assert.notEqual(victimId, victim.io.engine.id, 'the roster id is the Engine.IO session id');

    const third = v4();
    const [thirdId, persons] = await next(third, 'ready');
    assert.ok(persons.some((p) => p.id === victimId), JSON.stringify(persons));
    const atThird = record(third, 'message');

    const body = JSON.stringify({ to: thirdId, type: 'text', content: 'forged' });
    await attack({ eio, publicId: victimId, forged: [`42["message",${body}]`] });

    // The victim still sends as itself, and the third user got nothing else.
    const genuine = next(third, 'message');
    victim.emit('message', { to: thirdId, type: 'text', content: 'genuine' });
    const [m] = await genuine;
    assert.equal(m.from, victimId);
    assert.deepEqual(atThird.map((x) => x.content), ['genuine']);
    // ... and still receives its own messages.
    const mine = next(victim, 'message');
    third.emit('message', { to: victimId, type: 'text', content: 'for the victim' });
    assert.equal((await mine)[0].content, 'for the victim');
    assert.equal(victim.connected, true);
    assert.deepEqual(dropped, []);
    victim.close();
    third.close();
  });

  test(`a ${name} member of a room cannot be steered through its member id`, async () => {
    const room = `takeover-${name}`;
    const victim = polling('rooms');
    await next(victim, 'connect');
    const dropped = record(victim, 'disconnect');
    const victimAck = await ack(victim, 'join', { room, name: 'Victim' });
    assert.notEqual(victimAck.id, victim.io.engine.id, 'the member id is the Engine.IO session id');

    const third = v4('rooms');
    await next(third, 'connect');
    const joined = next(victim, 'joined');
    const thirdAck = await ack(third, 'join', { room, name: 'Third' });
    const publicId = thirdAck.members[0].id;
    assert.equal(publicId, victimAck.id);
    assert.equal((await joined)[0].id, thirdAck.id);
    const chats = record(third, 'message');
    const lefts = record(third, 'left');
    const updates = record(third, 'updated');

    await attack({
      eio,
      publicId,
      forged: [
        '42/rooms,["message",{"content":"forged"}]',
        '42/rooms,["state",{"audio_muted":true}]',
        '42/rooms,["leave"]',
      ],
    });

    const genuine = next(third, 'message');
    victim.emit('message', { content: 'genuine' });
    const [m] = await genuine;
    assert.equal(m.from, publicId);
    assert.equal(m.name, 'Victim');
    assert.deepEqual(chats.map((x) => x.content), ['genuine']);
    assert.deepEqual(lefts, []);
    assert.deepEqual(updates, []);
    const mine = next(victim, 'message');
    third.emit('message', { content: 'for the victim' });
    const [back] = await mine;
    assert.equal(back.from, thirdAck.id);
    assert.equal(victim.connected, true);
    assert.deepEqual(dropped, []);
    victim.close();
    third.close();
  });
}
