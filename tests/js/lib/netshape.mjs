// Shaped links for the browser tests: a thin client of `sfu-lite-netshape`, the same helper
// (tools/src/netshape.rs) the Rust tests and the load tool use. Root in a network namespace
// of its own (the tests run under `unshare --net`); every rule goes when `close()` is called
// or the test process exits (the helper's stdin closes).

import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { serverBin } from './server.mjs';

const ANSWER_MS = 10_000;

export class NetShape {
  #proc;
  #answers = [];
  #waiting = [];

  constructor() {
    const bin = process.env.NETSHAPE_BIN ?? path.join(path.dirname(serverBin()), 'sfu-lite-netshape');
    this.#proc = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.#proc.once('error', (err) => this.#fail(err));
    createInterface({ input: this.#proc.stdout }).on('line', (line) => {
      const next = this.#waiting.shift();
      if (next) next(line);
      else this.#answers.push(line);
    });
  }

  #fail(err) {
    for (const w of this.#waiting.splice(0)) w(`error: ${err.message}`);
  }

  async #send(command) {
    const answer = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sfu-lite-netshape: no answer to "${command}"`)), ANSWER_MS);
      this.#waiting.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
    this.#proc.stdin.write(`${command}\n`);
    const line = await answer;
    if (!line.startsWith('ok')) throw new Error(`sfu-lite-netshape "${command}": ${line}`);
    return line.slice(2).trim();
  }

  /**
   * Caps UDP traffic to `port` (a browser's socket: its downlink) at `kbit`; returns the cap.
   * With `queuePackets`, what does not fit a queue that long is dropped, as at a real
   * bottleneck; without it the queue is the device's (1000 packets: seconds of delay).
   */
  async capToPort(port, kbit, queuePackets) {
    const queue = queuePackets === undefined ? '' : ` ${queuePackets}`;
    return Number(await this.#send(`cap-to ${port} ${kbit}${queue}`));
  }

  setRate(cap, kbit) {
    return this.#send(`rate ${cap} ${kbit}`);
  }

  lift(cap) {
    return this.#send(`lift ${cap}`);
  }

  /** Silently drops `percent` % of the UDP packets arriving (to `port`, if given). */
  loseIncoming(percent, port) {
    return this.#send(port ? `lose ${percent} ${port}` : `lose ${percent}`);
  }

  /** Silently drops every UDP packet neither from nor to `ports`; returns the block for `undark`. */
  async darkExcept(ports) {
    return Number(await this.#send(`dark-except ${ports.join(' ')}`));
  }

  undark(block) {
    return this.#send(`undark ${block}`);
  }

  /** Removes every rule: waits for the helper to exit. */
  close() {
    return new Promise((resolve) => {
      if (this.#proc.exitCode !== null) return resolve();
      this.#proc.once('exit', () => resolve());
      this.#proc.stdin.end();
    });
  }
}
