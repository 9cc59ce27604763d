// Adaptive media on the page (docs/protocol.md, "adaptive media"):
// - the camera goes out as three simulcast layers; the server pauses the ones nobody needs
//   (`layers`) and the page switches those encodings off, which saves the uplink and the CPU;
// - the page tells the server how large each remote video is drawn (`view`), so nobody is sent
//   a 720p layer for a thumbnail, and nothing for a tile that cannot be seen.

/** Camera layers, low to high. Bitrates as in docs/web-client.md. */
export const CAMERA_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** Sets `active` on the sender's encodings named in `active` ({rid: bool}); others untouched. */
export async function applyLayers(sender, active) {
  const params = sender.getParameters();
  if (!params.encodings?.length) return;
  let changed = false;
  for (const enc of params.encodings) {
    if (!enc.rid || !(enc.rid in active)) continue;
    const on = Boolean(active[enc.rid]);
    if (enc.active !== on) {
      enc.active = on;
      changed = true;
    }
  }
  if (changed) await sender.setParameters(params);
}

const DEBOUNCE_MS = 300;

/**
 * Watches the video elements that show the subscriber's tracks and emits `view` when what
 * they need changes: size in device pixels, and whether they can be seen at all (on screen,
 * tab visible, camera on).
 */
export class ViewReporter {
  #timer = null;
  #last = '';
  #visible = new Map(); // element -> intersecting
  #watched = new Set();
  #resize = new ResizeObserver(() => this.schedule());
  #intersect = new IntersectionObserver((entries) => {
    for (const e of entries) this.#visible.set(e.target, e.isIntersecting);
    this.schedule();
  });
  #onVisibility = () => this.schedule();

  /**
   * @param socket the `/rooms` socket
   * @param getTracks () => Map<mid, {participant, source, kind}> of the subscriber
   * @param elementFor (participant, source) => HTMLVideoElement|null
   */
  constructor({ socket, getTracks, elementFor }) {
    Object.assign(this, { socket, getTracks, elementFor });
    document.addEventListener('visibilitychange', this.#onVisibility);
  }

  /** Something may have changed (tracks, layout, pin): report after the layout settles. */
  schedule() {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#report(), DEBOUNCE_MS);
  }

  #report() {
    const tracks = [];
    const seen = new Set();
    for (const [mid, info] of this.getTracks()) {
      if (info.kind !== 'video') continue;
      const video = this.elementFor(info.participant, info.source);
      if (!video) continue;
      seen.add(video);
      this.#watch(video);
      const rect = video.getBoundingClientRect();
      const dpr = window.devicePixelRatio || 1;
      const width = Math.round(rect.width * dpr);
      const height = Math.round(rect.height * dpr);
      const visible =
        !document.hidden && width > 0 && height > 0 && video.isConnected && this.#visible.get(video) !== false;
      tracks.push({ mid, width: visible ? width : 0, height: visible ? height : 0, visible });
    }
    for (const video of this.#watched) if (!seen.has(video)) this.#unwatch(video);
    const key = JSON.stringify(tracks);
    if (key === this.#last || !this.socket.connected) return;
    this.#last = key;
    this.socket.emit('view', { tracks });
  }

  /** A new subscriber connection (rejoin) starts with nothing reported. */
  reset() {
    this.#last = '';
    this.schedule();
  }

  #watch(video) {
    if (this.#watched.has(video)) return;
    this.#watched.add(video);
    this.#resize.observe(video);
    this.#intersect.observe(video);
  }

  #unwatch(video) {
    this.#watched.delete(video);
    this.#visible.delete(video);
    this.#resize.unobserve(video);
    this.#intersect.unobserve(video);
  }

  stop() {
    clearTimeout(this.#timer);
    this.#resize.disconnect();
    this.#intersect.disconnect();
    document.removeEventListener('visibilitychange', this.#onVisibility);
  }
}
