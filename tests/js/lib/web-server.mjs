// TEMPORARY until tests/js/lib/server.mjs lands from the signaling branch: starts the
// sfu-lite binary ($SFU_LITE_BIN) on 127.0.0.1 with an ephemeral port.
import { spawn } from 'node:child_process';
import { once } from 'node:events';

export async function startServer({ args = [], env = {} } = {}) {
  const bin = process.env.SFU_LITE_BIN;
  if (!bin) throw new Error('set SFU_LITE_BIN to the sfu-lite binary');
  const listen = args.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const proc = spawn(bin, [...listen, ...args], {
    // SFU_LITE_* variables are config overrides for the server; the binary's path is not one.
    env: Object.fromEntries(Object.entries({ RUST_LOG: 'warn,webrtc=error,webrtc_ice=error,dtls=error,webrtc_dtls=error', ...process.env, ...env }).filter(([k]) => k !== 'SFU_LITE_BIN')),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line in 30 s: ${out}`)), 30_000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on https?:\/\/[^:]+:(\d+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`sfu-lite exited (${code}): ${out}`)); });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url, port, proc,
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await once(proc, 'exit');
      clearTimeout(t);
    },
  };
}
