// Who is speaking, and per-stream statistics on demand, both read from getStats() of the two
// PeerConnections (remote audio levels from inbound-rtp, our own from media-source or a
// WebAudio analyser). One timer; statistics text is only built while the panel is shown.

const TICK_MS = 400;
const SPEAKING_LEVEL = 0.03; // audioLevel is linear, 0..1; speech is well above this
const SPEAKING_HOLD_MS = 900; // keeps the ring from flickering between words

export class StatsMonitor {
  #timer = null;
  #prev = new Map(); // stats id -> {bytes, packets, lost, ts}
  #lastLoud = new Map(); // participant id -> ms
  #analyser = null;
  #analysedTrack = null;
  #busy = false;
  #statsEvery = 0;

  /** @param getSession () => Session|null; view: RoomView */
  constructor({ view, getSession }) {
    this.view = view;
    this.getSession = getSession;
  }

  start() {
    this.stop();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  stop() {
    clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Call from a click so the AudioContext may run; used where getStats has no local level. */
  unlockAudio() {
    try {
      this.audioContext ??= new AudioContext();
      this.audioContext.resume?.();
    } catch {
      this.audioContext = null;
    }
  }

  async #tick() {
    const s = this.getSession();
    if (!s || !s.publisher || !s.subscriber || this.#busy) return;
    this.#busy = true;
    try {
      const now = performance.now();
      // Statistics text once a second; speaking every tick.
      const withText = this.view.statsVisible && (this.#statsEvery = (this.#statsEvery + 1) % 3) === 0;
      const [pub, sub] = await Promise.all([s.publisher.pc.getStats(), s.subscriber.pc.getStats()]);
      this.#remote(s, sub, now, withText);
      this.#local(s, pub, now, withText);
      for (const [id, t] of this.#lastLoud) {
        if (this.view.people.has(id)) this.view.setSpeaking(id, now - t < SPEAKING_HOLD_MS);
        else this.#lastLoud.delete(id); // left, or our own old id before a rejoin
      }
    } catch {
      // A connection closed mid-read (leave, reconnect): the next tick sees the new one.
    } finally {
      this.#busy = false;
    }
  }

  #remote(s, report, now, withText) {
    const rtt = pairRtt(report);
    const text = new Map();
    for (const r of report.values()) {
      if (r.type !== 'inbound-rtp') continue;
      const info = s.subscriber.tracks.get(r.mid);
      if (!info) continue;
      if (r.kind === 'audio') {
        // The server's `speaking` events, once they come, are the one source of truth.
        if (s.serverSpeaking) this.#lastLoud.clear();
        else if ((r.audioLevel ?? 0) > SPEAKING_LEVEL) this.#lastLoud.set(info.participant, now);
        else if (!this.#lastLoud.has(info.participant)) this.#lastLoud.set(info.participant, 0);
        if (withText) {
          const entry = text.get(info.participant) ?? {};
          entry.audio = this.#describe(r, null, r.packetsReceived, r.packetsLost).replace('\n', ' · ');
          text.set(info.participant, entry);
        }
      } else if (withText) {
        const entry = text.get(info.participant) ?? {};
        entry[info.source] = this.#describe(r, rtt, r.packetsReceived, r.packetsLost);
        text.set(info.participant, entry);
      }
    }
    for (const [id, entry] of text) {
      const camera = [entry.camera, entry.audio && `audio ${entry.audio}`].filter(Boolean).join('\n');
      this.view.setStats(id, { camera, screen: entry.screen });
    }
  }

  #local(s, report, now, withText) {
    const id = s.localKey;
    let level = null;
    const rtt = pairRtt(report);
    const remoteIn = new Map();
    for (const r of report.values()) if (r.type === 'remote-inbound-rtp') remoteIn.set(r.localId, r);
    const entry = {};
    for (const r of report.values()) {
      if (r.type === 'media-source' && r.kind === 'audio' && typeof r.audioLevel === 'number') {
        level = r.audioLevel;
      }
      if (withText && r.type === 'outbound-rtp' && r.kind === 'audio') {
        entry.audio = this.#describe(r, null, null, null).split('\n')[0];
      }
      if (withText && r.type === 'outbound-rtp' && r.kind === 'video') {
        const source = r.mid === s.publisher.midOf('screen') ? 'screen' : 'camera';
        const ri = remoteIn.get(r.id);
        const lossPct = typeof ri?.fractionLost === 'number' ? ri.fractionLost * 100 : null;
        entry[source] = this.#describe(r, rtt ?? ri?.roundTripTime, null, null, lossPct);
      }
    }
    if (level === null) level = this.#analyserLevel(s.media?.audio);
    if (s.serverSpeaking) this.#lastLoud.clear();
    else if (s.media?.audio && !s.media.audioMuted && level > SPEAKING_LEVEL) this.#lastLoud.set(id, now);
    else if (!this.#lastLoud.has(id)) this.#lastLoud.set(id, 0);
    if (withText) {
      const camera = [entry.camera, entry.audio && `audio ${entry.audio}`].filter(Boolean).join('\n');
      this.view.setStats(id, { camera, screen: entry.screen });
    }
  }

  /** One stream's line: resolution, frame rate, bitrate, loss, round-trip time. */
  #describe(r, rtt, received, lost, lossPct = null) {
    const bytes = r.bytesReceived ?? r.bytesSent ?? 0;
    const prev = this.#prev.get(r.id);
    this.#prev.set(r.id, { bytes, received, lost, ts: r.timestamp });
    let kbps = null;
    if (prev && r.timestamp > prev.ts) kbps = ((bytes - prev.bytes) * 8) / (r.timestamp - prev.ts);
    if (lossPct === null && prev && received !== null && lost !== null) {
      const dr = received - prev.received;
      const dl = lost - prev.lost;
      lossPct = dr + dl > 0 ? (Math.max(dl, 0) * 100) / (dr + dl) : 0;
    }
    const parts = [];
    if (r.frameWidth) parts.push(`${r.frameWidth}×${r.frameHeight}`);
    if (typeof r.framesPerSecond === 'number') parts.push(`${Math.round(r.framesPerSecond)} fps`);
    if (kbps !== null) parts.push(`${Math.round(kbps)} kb/s`);
    const second = [];
    if (lossPct !== null) second.push(`loss ${lossPct.toFixed(1)}%`);
    if (typeof rtt === 'number') {
      const ms = rtt * 1000;
      second.push(`RTT ${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`);
    }
    return [parts.join(' · '), second.join(' · ')].filter(Boolean).join('\n') || 'no data yet';
  }

  #analyserLevel(track) {
    if (!track || !this.audioContext || this.audioContext.state !== 'running') return 0;
    if (this.#analysedTrack !== track) {
      this.#analyser?.source.disconnect();
      const source = this.audioContext.createMediaStreamSource(new MediaStream([track]));
      const node = this.audioContext.createAnalyser();
      node.fftSize = 512;
      source.connect(node);
      this.#analyser = { source, node, buf: new Float32Array(node.fftSize) };
      this.#analysedTrack = track;
    }
    const { node, buf } = this.#analyser;
    node.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    return Math.sqrt(sum / buf.length);
  }
}

/** Round-trip time (s) of the selected ICE candidate pair, if the browser reports it. */
function pairRtt(report) {
  let pairId = null;
  for (const r of report.values()) if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
  for (const r of report.values()) {
    if (r.type !== 'candidate-pair') continue;
    if (r.id === pairId || (!pairId && (r.selected || (r.nominated && r.state === 'succeeded')))) {
      return typeof r.currentRoundTripTime === 'number' ? r.currentRoundTripTime : null;
    }
  }
  return null;
}
