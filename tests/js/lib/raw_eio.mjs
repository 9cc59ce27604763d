// A raw Engine.IO client for hostile tests: plain HTTP long-polling requests and a hand-made
// WebSocket (RFC 6455 framing, client frames masked), so a test can address any session id it
// likes, exactly as an attacker would. Every wait is bounded by the caller's `timeoutMs`.

import http from 'node:http';
import crypto from 'node:crypto';

/** The Engine.IO path for `sid` on `transport`; `eio` is 4 (socket.io v3/v4) or 3 (v2). */
export function eioPath(eio, sid, transport = 'polling') {
  return `/socket.io/?EIO=${eio}&transport=${transport}&sid=${encodeURIComponent(sid)}`;
}

/** One polling payload carrying `packets` (strings), framed as protocol `eio` wants it. */
export function pollingBody(eio, packets) {
  // EIO4 separates packets with the record separator; EIO3 prefixes each with its length.
  return eio === 4 ? packets.join('\x1e') : packets.map((p) => `${p.length}:${p}`).join('');
}

/**
 * One polling request to `sid`. Resolves with `{status, text}`, or `{status: 'timeout'}` when
 * the server held the request open past `timeoutMs` (a long poll it accepted as the session's).
 */
export async function poll(serverUrl, { eio, sid, method = 'GET', packets, timeoutMs }) {
  const url = new URL(eioPath(eio, sid), serverUrl);
  const init = { method, signal: AbortSignal.timeout(timeoutMs) };
  if (packets) {
    init.body = pollingBody(eio, packets);
    init.headers = { 'Content-Type': 'text/plain;charset=UTF-8' };
  }
  try {
    const res = await fetch(url, init);
    return { status: res.status, text: await res.text() };
  } catch (err) {
    if (err.name === 'TimeoutError' || err.name === 'AbortError') return { status: 'timeout' };
    throw err;
  }
}

/**
 * Opens a raw WebSocket on `path`. Resolves with `{status}` when the server answers the HTTP
 * request without upgrading, else with a {@link RawWebSocket}.
 */
export function rawWebSocket(serverUrl, path, timeoutMs) {
  const { hostname, port } = new URL(serverUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: hostname,
      port,
      path,
      timeout: timeoutMs,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
      },
    });
    req.on('upgrade', (_res, socket, head) => resolve(new RawWebSocket(socket, head)));
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to the upgrade within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** The text frames a server sends, and a way to send text frames. */
export class RawWebSocket {
  status = 101;
  /** Every text frame received so far. */
  frames = [];
  #buf;
  #socket;
  #read = 0;
  #wake = () => {};

  constructor(socket, head) {
    this.#socket = socket;
    this.#buf = Buffer.from(head ?? []);
    /** Resolves when the TCP connection has ended, either side. */
    this.closed = new Promise((resolve) => socket.once('close', resolve));
    socket.on('data', (chunk) => {
      this.#buf = Buffer.concat([this.#buf, chunk]);
      this.#parse();
    });
    socket.on('error', () => {});
    this.#parse();
  }

  /**
   * Resolves with the next frame not read yet that `match`es (frames before it are passed
   * over), or rejects after `timeoutMs` or when the connection ends first.
   */
  async next(match, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let ended = false;
    this.closed.then(() => {
      ended = true;
      this.#wake();
    });
    for (;;) {
      while (this.#read < this.frames.length) {
        const frame = this.frames[this.#read++];
        if (match(frame)) return frame;
      }
      if (ended) throw new Error('connection ended before the frame came');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no such frame within ${timeoutMs} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  send(text) {
    const payload = Buffer.from(text);
    if (payload.length > 125) throw new Error('raw frames here are small');
    const mask = crypto.randomBytes(4);
    const masked = payload.map((b, i) => b ^ mask[i % 4]);
    this.#socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
  }

  close() {
    this.#socket.destroy();
  }

  #parse() {
    while (this.#buf.length >= 2) {
      let len = this.#buf[1] & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (this.#buf.length < 4) return;
        len = this.#buf.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (this.#buf.length < 10) return;
        len = Number(this.#buf.readBigUInt64BE(2));
        offset = 10;
      }
      if (this.#buf.length < offset + len) return;
      const opcode = this.#buf[0] & 0x0f;
      const payload = this.#buf.subarray(offset, offset + len);
      this.#buf = this.#buf.subarray(offset + len);
      if (opcode === 0x1) this.frames.push(payload.toString());
    }
    this.#wake();
  }
}
