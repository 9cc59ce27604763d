// What a packet socketioxide cannot read does, pinned as docs/protocol.md describes it.
//
// socketioxide 0.18 reads the event name of every event packet itself, before any handler of
// ours runs, and closes the whole Engine.IO connection (every namespace on it) when the JSON
// array or its first element cannot be read as a string; it has no hook or pluggable parser
// to turn that into an `error` event. Everything it can read reaches our checks, so a payload
// that is merely not what we accept (trailing garbage, wrong shapes) gets the `error` event
// and the socket stays.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io as ioV4 } from 'socket.io-client';
import { startServer } from './lib/server.mjs';
import { WAIT_MS, next } from './lib/events.mjs';
import { rawWebSocket } from './lib/raw_eio.mjs';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

/** A raw EIO4 WebSocket connected to `/`, past its `ready`; resolves with it and its id. */
async function rawTutorialSocket() {
  const ws = await rawWebSocket(server.url, '/socket.io/?EIO=4&transport=websocket', WAIT_MS);
  assert.equal(ws.status, 101);
  await ws.next((f) => f.startsWith('0{'), WAIT_MS);
  ws.send('40');
  await ws.next((f) => f.startsWith('40'), WAIT_MS);
  const ready = await ws.next((f) => f.startsWith('42["ready"'), WAIT_MS);
  return { ws, id: JSON.parse(ready.slice(2))[1] };
}

/** Ends once `ws` has closed; false if it is still open after the wait. */
async function closes(ws) {
  let timer;
  const r = await Promise.race([
    ws.closed.then(() => true),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(false), WAIT_MS);
    }),
  ]);
  clearTimeout(timer);
  return r;
}

const unreadable = [
  ['invalid JSON', '42["message",{"to":'],
  ['a non-string event name', '42[1,{"to":"x"}]'],
  ['an event that is no array', '42{"event":"message"}'],
  ['an empty array', '42[]'],
  ['an escaped event name', '42["mess\\u0061ge",{"to":"x"}]'],
];

for (const [what, packet] of unreadable) {
  test(`${what} closes the whole connection, without an error event`, async () => {
    const { ws, id } = await rawTutorialSocket();
    const bystander = ioV4(server.url, { forceNew: true, reconnection: false });
    const [, persons] = await next(bystander, 'ready');
    assert.ok(persons.some((p) => p.id === id));
    const gone = next(bystander, 'change');
    const before = ws.frames.length;
    ws.send(packet);
    assert.equal(await closes(ws), true, 'the connection stayed open');
    assert.deepEqual(ws.frames.slice(before).filter((f) => f.startsWith('42["error"')), []);
    // The others see it leave, as after any disconnect; they are not affected otherwise.
    const [after] = await gone;
    assert.ok(!after.some((p) => p.id === id), JSON.stringify(after));
    assert.equal(bystander.connected, true);
    bystander.close();
  });
}

test('a readable event with a payload we refuse gets the error event and the socket stays', async () => {
  const { ws, id } = await rawTutorialSocket();
  const bystander = ioV4(server.url, { forceNew: true, reconnection: false });
  const [bystanderId] = await next(bystander, 'ready');
  for (const [packet, code] of [
    ['42["message",{"to":"x"}] trailing', 'bad_request'],
    ['42["message",{"to":"x"},2]', 'bad_request'],
    ['42["nosuch"]', 'unknown_event'],
  ]) {
    ws.send(packet);
    const frame = await ws.next((f) => f.startsWith('42["error"'), WAIT_MS);
    assert.equal(JSON.parse(frame.slice(2))[1].code, code, packet);
  }
  const arrived = next(bystander, 'message');
  ws.send(`42["message",${JSON.stringify({ to: bystanderId, content: 'still here' })}]`);
  const [m] = await arrived;
  assert.equal(m.from, id);
  ws.close();
  bystander.close();
});
