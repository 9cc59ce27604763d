// The room as people see it: one tile per participant (video, or an avatar when the camera is
// off), screen shares on a large stage, and the participant list. Pure DOM; the session tells
// it who is here, what they publish and what state they are in.

import { el, icon, initials, hueFor } from './util.js';

const EMPTY_STATE = { audio_muted: false, video_muted: false, screen: false };

export class RoomView {
  /** @type {Map<string, object>} participant id -> record */
  people = new Map();
  /** Ids that left; ids are never reused, so this only grows by one per departure. */
  #gone = new Set();

  constructor({ grid, stage, roster, count, onAudioBlocked }) {
    this.grid = grid;
    this.stage = stage;
    this.roster = roster;
    this.count = count;
    this.onAudioBlocked = onAudioBlocked;
    this.statsVisible = false;
    new ResizeObserver(() => this.#layout()).observe(grid);
  }

  /** Adds or renames a participant; the local one first, and marked as such. */
  upsert({ id, name, state, local = false }) {
    let p = this.people.get(id);
    if (!p) {
      p = this.#create(id, local);
      this.people.set(id, p);
      this.#updateCount();
    }
    if (name !== undefined && name !== p.name) {
      p.name = name;
      p.nameEl.textContent = local ? `${name} (you)` : name;
      p.rosterName.textContent = local ? `${name} (you)` : name;
      p.avatar.textContent = initials(name);
      p.avatar.style.setProperty('--hue', hueFor(name));
      p.tile.dataset.name = name;
      p.rosterItem.dataset.name = name;
      p.screenLabel.textContent = local ? 'Your screen' : `${name}'s screen`;
      p.tile.setAttribute('aria-label', local ? `${name} (you)` : name);
    }
    if (state) this.setState(id, state);
    this.#layout();
    return p;
  }

  #create(id, local) {
    const video = el('video', { autoplay: true, playsinline: true, muted: true, dataset: { source: 'camera' } });
    video.muted = true;
    const audio = el('audio', { autoplay: true, dataset: { source: 'microphone' } });
    const avatar = el('div', { class: 'avatar', 'aria-hidden': 'true' }, '?');
    const nameEl = el('span', { class: 'name' });
    const micOff = el('span', { class: 'badge mic-off', title: 'Microphone muted' }, icon('mic-off'));
    const camOff = el('span', { class: 'badge cam-off', title: 'Camera off' }, icon('cam-off'));
    const stats = el('pre', { class: 'stats', hidden: true });
    const pin = el('button', { type: 'button', class: 'pin', 'aria-pressed': 'false', title: 'Show large', onclick: () => this.togglePin(this.#idOf(tile)) }, icon('pin'));
    const tile = el(
      'figure',
      { class: `tile${local ? ' local' : ''}`, role: 'group', dataset: { id } },
      video,
      avatar,
      el('figcaption', {}, micOff, camOff, nameEl),
      stats,
      pin,
      local ? null : audio,
    );
    tile.addEventListener('dblclick', () => this.togglePin(this.#idOf(tile)));
    const screenVideo = el('video', { autoplay: true, playsinline: true, muted: true, dataset: { source: 'screen' } });
    screenVideo.muted = true;
    const screenLabel = el('span', { class: 'label' });
    const screenStats = el('pre', { class: 'stats', hidden: true });
    const screen = el('figure', { class: 'screen', dataset: { id } }, screenVideo, screenLabel, screenStats);
    const rosterName = el('span', { class: 'name' });
    const rosterItem = el(
      'li',
      { dataset: { id } },
      el('span', { class: 'dot', 'aria-hidden': 'true' }),
      rosterName,
      el('span', { class: 'badge mic-off', title: 'Microphone muted' }, icon('mic-off')),
      el('span', { class: 'badge cam-off', title: 'Camera off' }, icon('cam-off')),
      el('span', { class: 'badge sharing', title: 'Sharing screen' }, icon('screen')),
    );
    if (local) {
      this.grid.prepend(tile);
      this.roster.prepend(rosterItem);
    } else {
      this.grid.append(tile);
      this.roster.append(rosterItem);
    }
    const p = {
      id, local, name: undefined, state: { ...EMPTY_STATE }, tracks: {},
      tile, video, audio, avatar, nameEl, stats, screen, screenVideo, screenLabel, screenStats,
      rosterItem, rosterName, pin,
    };
    this.#render(p);
    return p;
  }

  /** The tile's current id (it changes when the local participant rejoins). */
  #idOf(tile) {
    return tile.dataset.id;
  }

  /** Shows one person's tile large on the stage, or puts it back in the grid. */
  togglePin(id) {
    const previous = this.pinned ? this.people.get(this.pinned) : null;
    if (previous) {
      if (previous.local) this.grid.prepend(previous.tile);
      else this.grid.append(previous.tile);
      previous.tile.classList.remove('pinned');
      previous.pin.setAttribute('aria-pressed', 'false');
      previous.pin.title = 'Show large';
    }
    const next = this.pinned === id ? null : this.people.get(id);
    this.pinned = next ? id : null;
    if (next) {
      this.stage.prepend(next.tile);
      next.tile.classList.add('pinned');
      next.pin.setAttribute('aria-pressed', 'true');
      next.pin.title = 'Back to the grid';
    }
    this.#refreshStage();
  }

  #refreshStage() {
    this.stage.hidden = this.stage.childElementCount === 0;
    this.grid.closest('.room-body')?.classList.toggle('has-stage', !this.stage.hidden);
    this.stage.dataset.count = String(this.stage.childElementCount);
    this.#layout();
  }

  /** The local participant gets a new id on every (re)join; its tile stays. */
  rekey(oldId, newId) {
    const p = this.people.get(oldId);
    if (!p || oldId === newId) return;
    this.people.delete(oldId);
    this.people.delete(newId);
    p.id = newId;
    for (const node of [p.tile, p.screen, p.rosterItem]) node.dataset.id = newId;
    this.people.set(newId, p);
    if (this.pinned === oldId) this.pinned = newId;
  }

  remove(id) {
    const p = this.people.get(id);
    if (!p) return;
    if (!p.local) this.#gone.add(id);
    if (this.pinned === id) this.pinned = null;
    p.tile.remove();
    p.screen.remove();
    p.rosterItem.remove();
    p.video.srcObject = p.audio.srcObject = p.screenVideo.srcObject = null;
    this.people.delete(id);
    this.#updateCount();
    this.#refreshStage();
  }

  /** Drops every remote participant (the session lost the room and will rejoin). */
  clearRemotes() {
    for (const [id, p] of this.people) if (!p.local) this.remove(id);
  }

  setState(id, state) {
    const p = this.people.get(id);
    if (!p) return;
    p.state = { ...p.state, ...state };
    this.#render(p);
  }

  /** A remote (or the local) track for one source; null removes it. */
  setTrack(id, source, track) {
    // A track of someone who left (an offer racing the `left` event) must not bring them back.
    if (!this.people.has(id) && (!track || this.#gone.has(id))) return;
    const p = this.people.get(id) ?? this.upsert({ id });
    p.tracks[source] = track;
    const stream = track ? new MediaStream([track]) : null;
    if (source === 'camera') p.video.srcObject = stream;
    else if (source === 'screen') p.screenVideo.srcObject = stream;
    else if (source === 'microphone' && !p.local) {
      p.audio.srcObject = stream;
      if (stream) this.#play(p.audio);
    }
    this.#render(p);
  }

  /** The element a remote video source is drawn in (for the view reports), or null. */
  videoFor(id, source) {
    const p = this.people.get(id);
    if (!p) return null;
    return source === 'screen' ? p.screenVideo : source === 'camera' ? p.video : null;
  }

  #play(media) {
    // Autoplay with sound may need a click first; the banner offers one.
    media.play()?.catch((err) => {
      if (err?.name === 'NotAllowedError') this.onAudioBlocked?.();
    });
  }

  /** After a click, retries every remote audio element that autoplay refused. */
  resumeAudio() {
    for (const p of this.people.values()) if (p.audio.srcObject && p.audio.paused) this.#play(p.audio);
  }

  setSpeaking(id, loud) {
    const p = this.people.get(id);
    // Muted means not speaking, whatever the last level said.
    const speaking = loud && !p?.state.audio_muted;
    if (!p || p.speaking === speaking) return;
    p.speaking = speaking;
    p.tile.classList.toggle('speaking', speaking);
    p.tile.dataset.speaking = String(speaking);
    p.rosterItem.classList.toggle('speaking', speaking);
  }

  setStatsVisible(on) {
    this.statsVisible = on;
    for (const p of this.people.values()) {
      p.stats.hidden = !on;
      p.screenStats.hidden = !on;
    }
  }

  setStats(id, { camera, screen }) {
    const p = this.people.get(id);
    if (!p) return;
    p.stats.textContent = camera ?? '';
    p.screenStats.textContent = screen ?? '';
  }

  #render(p) {
    const { audio_muted, video_muted, screen } = p.state;
    const showVideo = Boolean(p.tracks.camera) && !video_muted;
    const showScreen = Boolean(p.tracks.screen) && Boolean(screen);
    p.tile.dataset.audioMuted = String(Boolean(audio_muted));
    p.tile.dataset.videoMuted = String(Boolean(video_muted));
    p.tile.dataset.screen = String(showScreen);
    p.tile.classList.toggle('has-video', showVideo);
    p.rosterItem.dataset.audioMuted = String(Boolean(audio_muted));
    p.rosterItem.dataset.videoMuted = String(Boolean(video_muted));
    p.rosterItem.dataset.screen = String(Boolean(screen));
    if (showScreen && !p.screen.isConnected) this.stage.append(p.screen);
    if (!showScreen && p.screen.isConnected) p.screen.remove();
    this.#refreshStage();
  }

  #updateCount() {
    const n = this.people.size;
    this.count.textContent = n <= 1 ? 'Only you so far: invite others' : `${n} people`;
  }

  /** Picks the column count that makes 16:9 tiles largest in the grid's box. */
  #layout() {
    const n = this.grid.childElementCount;
    if (n === 0) return;
    const { width, height } = this.grid.getBoundingClientRect();
    if (!width || !height) return;
    const gap = 12; // as in app.css
    let best = { cols: 1, size: 0 };
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const w = Math.min((width - gap * (cols - 1)) / cols, (((height - gap * (rows - 1)) / rows) * 16) / 9);
      if (w > best.size) best = { cols, size: w };
    }
    this.grid.style.setProperty('--cols', best.cols);
    this.grid.style.setProperty('--tile-w', `${Math.max(Math.floor(best.size) - 1, 80)}px`);
  }
}
