import { startServer } from './lib/server.mjs';
import { launchChromium, newPage, roomUrl, inbound, ownId, waitFor } from './lib/browser.mjs';
const server = await startServer({ env: { RUST_LOG: 'warn,dtls=error,sfu_lite::sfu=debug' } });
const browser = await launchChromium();
const pub = await newPage(browser, { width: 480, height: 360 });
await pub.goto(roomUrl(server.url, 'r', 'Pub', { lowres: '0', simulcast: '1' }));
const pubId = await ownId(pub);
const big = await newPage(browser, { width: 1400, height: 900 });
await big.goto(roomUrl(server.url, 'r', 'Big', { cam: '0', mic: '0' }));
await ownId(big);
await waitFor(() => big.$(`#grid .tile[data-id="${pubId}"]`));
await big.dblclick(`#grid .tile[data-id="${pubId}"]`);
for (let i = 0; i < 12; i++) {
  await new Promise((r) => setTimeout(r, 2000));
  const v = (await inbound(big))[`${pubId}/camera`];
  const out = await pub.evaluate(async () => {
    const pc = window.sfuLite?.publisher?.pc; const o = [];
    for (const r of (await pc.getStats()).values()) if (r.type === 'outbound-rtp' && r.kind === 'video') o.push([r.rid, r.frameWidth, r.framesPerSecond, r.targetBitrate, r.qualityLimitationReason, r.active]);
    return o;
  });
  const layers = await big.evaluate(() => [...(window.sfuLite.session?.layers.entries() ?? [])]);
  const pair = await big.evaluate(async () => { for (const r of (await window.sfuLite.subscriber.pc.getStats()).values()) if (r.type === 'candidate-pair' && r.nominated) return [r.availableIncomingBitrate, r.bytesReceived]; });
  console.log(i, JSON.stringify({ w: v?.frameWidth, fd: v?.framesDecoded, layers, pair, out }));
}
await browser.close();
await server.stop();
console.log(server.output().split('\n').filter((l) => /layer|estimate|target/i.test(l)).slice(-30).join('\n'));
