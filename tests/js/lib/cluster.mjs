// The cluster tests' parts (docs/cluster.md): a real redis-server on a free loopback port,
// sfu-lite nodes registered in it, and the "one URL" in front of them: a plain TCP load
// balancer that hands each new connection to the next node, skipping nodes that refuse.

import { spawn } from 'node:child_process';
import net from 'node:net';
import { startServer } from './server.mjs';

/** A free loopback TCP port at this instant. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once something answers PING on `port` with +PONG, within `timeoutMs`. */
async function pong(port, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('error', () => resolve(false));
      c.once('connect', () => c.write('PING\r\n'));
      c.once('data', (d) => {
        c.destroy();
        resolve(d.toString().startsWith('+PONG'));
      });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Debian's redis-server, nothing saved to disk; `restart` brings it back empty on its port. */
export async function startRedis() {
  const port = await freePort();
  let proc;
  let exited;
  const launch = async () => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    exited = new Promise((resolve) => proc.once('exit', resolve));
    await pong(port, 10_000);
  };
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}/`,
    stop,
    restart: async () => {
      await stop();
      await launch();
    },
  };
}

/** An sfu-lite node of the cluster on `redisUrl`, named `id`, on its own port. */
export async function startNode(redisUrl, id, env = {}) {
  const port = await freePort();
  return startServer({
    args: ['--listen', `127.0.0.1:${port}`],
    env: {
      SFU_LITE_CLUSTER_REDIS_URL: redisUrl,
      SFU_LITE_CLUSTER_NODE_ID: id,
      SFU_LITE_CLUSTER_URL: `http://127.0.0.1:${port}`,
      ...env,
    },
  });
}

/**
 * Redis and one node per id, with heartbeats short enough (200 ms, ttl 1 s) that a test sees
 * a node's death or a repair within a second. `stop` ends them all.
 */
export async function startCluster(ids) {
  const redis = await startRedis();
  const env = { SFU_LITE_CLUSTER_HEARTBEAT_MS: '200', SFU_LITE_CLUSTER_NODE_TTL_MS: '1000' };
  const nodes = {};
  for (const id of ids) nodes[id] = await startNode(redis.url, id, env);
  return {
    redis,
    nodes,
    stop: async () => {
      for (const n of Object.values(nodes)) await n.stop().catch(() => {});
      await redis.stop();
    },
  };
}

/**
 * A TCP balancer on a free port in front of `backends` (ports): each accepted connection goes
 * to the next backend in turn; one that refuses is skipped for this connection.
 */
export async function startBalancer(backends) {
  let next = 0;
  const open = new Set();
  const server = net.createServer((client) => {
    open.add(client);
    client.once('close', () => open.delete(client));
    client.pause();
    const attempt = (tries) => {
      if (tries === 0) return client.destroy();
      const port = backends[next++ % backends.length];
      const upstream = net.connect(port, '127.0.0.1');
      upstream.once('error', () => attempt(tries - 1));
      upstream.once('connect', () => {
        upstream.removeAllListeners('error');
        open.add(upstream);
        upstream.once('close', () => open.delete(upstream));
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        upstream.once('close', () => client.destroy());
        client.once('close', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    attempt(backends.length);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/`,
    stop: () => {
      for (const s of open) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
