// Starts the sfu-lite binary for Node tests (signaling and browser tests share this helper).
//
// The binary is `SFU_BIN`, or `target/debug/sfu-lite` of this checkout. It listens on
// 127.0.0.1 with an ephemeral port unless `args` names `--listen`; the port is read from the
// stdout line `sfu-lite listening on http://localhost:PORT/`. Every wait is bounded.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The server binary the tests run. */
export function serverBin() {
  return process.env.SFU_BIN || path.resolve(here, '../../../target/debug/sfu-lite');
}

/**
 * Starts a server and resolves once it listens.
 * @param {{args?: string[], env?: Record<string,string>, timeoutMs?: number}} options
 * @returns {Promise<{url: string, port: number, proc: import('node:child_process').ChildProcess,
 *   output: () => string, stop: (timeoutMs?: number) => Promise<number|null>}>}
 *   `url` uses 127.0.0.1 (Node may resolve `localhost` to ::1, where the server is not).
 */
export function startServer({ args = [], env = {}, timeoutMs = 20000 } = {}) {
  const listen = args.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const proc = spawn(serverBin(), ['serve', ...listen, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const keep = (chunk) => {
    log += chunk.toString();
    if (log.length > 200_000) log = log.slice(-100_000);
  };
  proc.stderr.on('data', keep);
  const output = () => log;

  const exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  const stop = async (stopTimeoutMs = 8000) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
    proc.kill('SIGTERM');
    let timer;
    const code = await Promise.race([
      exited,
      new Promise((resolve) => {
        timer = setTimeout(() => resolve('timeout'), stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (code === 'timeout') {
      proc.kill('SIGKILL');
      await exited;
      throw new Error(`sfu-lite did not exit within ${stopTimeoutMs} ms of SIGTERM\n${log}`);
    }
    return code;
  };

  return new Promise((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`sfu-lite did not report its port within ${timeoutMs} ms\n${log}`));
    }, timeoutMs);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${serverBin()}: ${err.message}`));
    });
    const early = (code) => {
      clearTimeout(timer);
      reject(new Error(`sfu-lite exited with ${code} before listening\n${log}`));
    };
    proc.once('exit', early);
    proc.stdout.on('data', (chunk) => {
      keep(chunk);
      stdout += chunk.toString();
      const m = stdout.match(/sfu-lite listening on (https?):\/\/[^:/]+:(\d+)\//);
      if (m) {
        clearTimeout(timer);
        proc.off('exit', early);
        const port = Number(m[2]);
        resolve({ url: `${m[1]}://127.0.0.1:${port}/`, port, proc, output, stop });
      }
    });
  });
}
