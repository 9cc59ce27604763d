// One meeting session: the `/rooms` Socket.IO connection, the join, the two PeerConnections,
// and recovery. A media connection that goes down (or a network change) restarts ICE and keeps
// the membership: same id, tiles and chat. When the socket drops, or the server gives up on our
// media, the session leaves nothing behind and joins again (a new id; others see a leave and a
// join).

import { io } from '../vendor/socket.io.esm.min.js';
import { Publisher, Subscriber } from './peers.js';
import { ViewReporter } from './simulcast.js';
import { sleep } from './util.js';

const JOIN_TIMEOUT_MS = 10_000;
// A connection still down restarts ICE again this often: a restart made while the network is
// dark checks nothing once it is back (agents give up on unanswered pairs).
const ICE_RETRY_MS = 2_000;
const MEDIA_CONNECT_MS = 20_000;
// room_elsewhere answers followed in a row before starting over (the room moved meanwhile).
const MAX_HOPS = 3;
const ENTRY_RETRY_MS = 1_000;

/**
 * Events (EventTarget, detail in `e.detail`): `status` {state, text} where state is
 * connecting | connected | reconnecting | failed | left; `chat` {from, name, content, time};
 * `problem` {code, message, event}.
 */
export class Session extends EventTarget {
  id = null;
  /** The local tile's key in the view: our id once joined, a placeholder before. */
  localKey = 'self';
  publisher = null;
  subscriber = null;
  #left = false;
  #base = null; // the cluster node our socket goes to; null = the page's own server
  #hops = 0; // room_elsewhere answers followed since the last join
  #generation = 0; // bumps on every (re)join; stale async work checks it
  #early = []; // media events that arrived before the PeerConnections existed
  #iceTimers = new Map();
  #restarts = 0;
  #sentState = '';
  #unhook;
  #reporter = null;
  /** True once the server reports who speaks (`speaking`); the page's own guess then stops. */
  serverSpeaking = false;
  /** Subscriber mid -> simulcast layer (rid) the server forwards on it, from `layer`. */
  layers = new Map();

  constructor({ room, name, media, view, lowres = false, simulcast = !lowres, log = console.warn, token = null, password = null }) {
    super();
    Object.assign(this, { room, name, media, view, lowres, simulcast, log, token, password });
    this.role = null;
    this.#openSocket(null);
    this.#unhook = new AbortController();
    media.addEventListener('change', () => this.#mediaChanged(), { signal: this.#unhook.signal });
    // A new network (Wi-Fi to mobile, a VPN coming up): the old candidate pairs may be dead.
    const networkChanged = () => this.#networkChanged();
    window.addEventListener('online', networkChanged, { signal: this.#unhook.signal });
    navigator.connection?.addEventListener?.('change', networkChanged, { signal: this.#unhook.signal });
  }

  start() {
    this.view.upsert({ id: this.localKey, name: this.name, local: true });
    this.#mediaChanged();
    this.#status('connecting', 'Connecting…');
    this.socket.connect();
  }

  async leave() {
    this.#left = true;
    this.#generation++;
    if (this.socket.connected) {
      try {
        await this.socket.timeout(2000).emitWithAck('leave', {});
      } catch {
        // Disconnecting below ends the membership anyway.
      }
    }
    this.#end();
    this.#status('left', 'You left the meeting.');
  }

  /** A moderation action (`docs/protocol.md`); a refusal arrives as a `problem`. */
  moderate(action) {
    this.socket.emit('moderate', action);
  }

  sendChat(content) {
    this.socket.emit('message', { content });
  }

  /** Tells the others our mute/camera/screen state when it changed since the last time. */
  sendState() {
    if (!this.id) return;
    const state = {
      audio_muted: !this.media.audio || this.media.audioMuted,
      video_muted: !this.media.video,
      screen: Boolean(this.media.screen),
    };
    const key = `${this.id}:${JSON.stringify(state)}`;
    if (key === this.#sentState) return;
    this.#sentState = key;
    this.socket.emit('state', state);
  }

  /**
   * The `/rooms` socket to `base` (another cluster node's URL, which hosts our room), or to the
   * page's own server when `base` is null. A socket to another node lives only as long as it
   * works: when it drops, the session goes back to the page's server, which knows where the
   * room is now (docs/cluster.md).
   */
  #openSocket(base) {
    if (this.socket) {
      this.socket.removeAllListeners();
      this.socket.disconnect();
    }
    this.#base = base;
    const url = base ? new URL('/rooms', base).href : '/rooms';
    this.socket = io(url, {
      // An invitation's token travels in the connection's auth payload.
      ...(this.token ? { auth: { token: this.token } } : {}),
      // WebSocket first: one TCP connection, which any balancer in front of a cluster keeps on
      // one node; long-polling (several requests, which only a sticky balancer keeps together)
      // is the fallback where WebSocket is blocked. Another node's origin: WebSocket only,
      // which needs no CORS.
      ...(base
        ? { transports: ['websocket'], reconnection: false }
        : { transports: ['websocket', 'polling'], tryAllTransports: true }),
      autoConnect: false,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
      timeout: 10_000,
      forceNew: true, // a rejoin after leaving gets its own connection
    });
    this.#wire();
  }

  /** The room is hosted by the cluster node at `url`: join it there. */
  #moveTo(url) {
    if (++this.#hops > MAX_HOPS) {
      this.#hops = 0;
      this.#openSocket(null);
      this.#restart('The meeting moved between servers. Retrying…');
      return;
    }
    this.#generation++;
    this.#openSocket(url);
    this.socket.connect();
  }

  /**
   * A socket to another node failed: start over from the page's server, after a fixed pause.
   * A node that died stays in the registry until its entry expires (cluster.node_ttl_ms, 3 s),
   * so the page's server may send us back to it a few times; growing pauses would add up.
   */
  async #backToEntry(text) {
    this.#lost(text);
    this.#openSocket(null);
    const generation = this.#generation;
    await sleep(ENTRY_RETRY_MS);
    if (!this.#left && generation === this.#generation && !this.socket.connected) this.socket.connect();
  }

  #wire() {
    const s = this.socket;
    s.on('connect', () => this.#join());
    s.on('disconnect', (reason) => {
      if (this.#left) return;
      if (this.#base) return this.#backToEntry(`Connection lost (${reason}). Reconnecting…`);
      this.#lost(`Connection lost (${reason}). Reconnecting…`);
      // After a server-side disconnect socket.io does not retry by itself.
      if (reason === 'io server disconnect') this.#retryLater();
    });
    s.on('connect_error', (err) => {
      if (this.#left) return;
      if (this.#base) return this.#backToEntry(`Cannot reach the meeting's server (${err.message}). Retrying…`);
      this.#status('reconnecting', `Cannot reach the server (${err.message}). Retrying…`);
      // A refusal by the server (e.g. too many connections) is not retried by socket.io itself.
      if (!s.active) this.#retryLater();
    });
    s.on('joined', (m) => {
      this.view.upsert(m);
      this.#tell('member', m);
    });
    s.on('left', ({ id }) => {
      this.view.remove(id);
      this.#tell('member-left', { id });
    });
    s.on('moderated', (m) => this.#moderated(m));
    s.on('updated', ({ id, state }) => this.view.setState(id, state));
    s.on('message', (m) => this.dispatchEvent(new CustomEvent('chat', { detail: m })));
    s.on('error', (e) => {
      // A moderator removed us, or ended the meeting: no rejoin, the page says why.
      if (e?.code === 'removed' || e?.code === 'room_ended') {
        this.#fatal(e);
        return;
      }
      // The server dropped our media (ICE failed on its side, or never connected) and took us
      // out of the room, or it no longer knows us as a member: start over.
      if (this.id && (e?.event === 'media' || e?.code === 'not_in_room')) {
        this.#restart('Media connection lost. Reconnecting…');
        return;
      }
      this.#problem(e);
    });
    s.on('publish_answer', ({ sdp }) => this.#media(() => this.publisher.applyAnswer(sdp)));
    s.on('subscribe_offer', (offer) => this.#media(() => this.subscriber.applyOffer(offer)));
    s.on('layers', (m) => this.#media(() => this.publisher.setLayers(m)));
    s.on('layer', ({ mid, rid }) => this.layers.set(mid, rid));
    s.on('speaking', ({ id, speaking }) => {
      this.serverSpeaking = true;
      this.view.setSpeaking(id === this.id ? this.localKey : id, speaking);
    });
    s.on('candidate', ({ pc, candidate }) =>
      this.#media(() => (pc === 'publisher' ? this.publisher : this.subscriber).addCandidate(candidate)),
    );
  }

  /** Runs a media step now, or keeps it until the PeerConnections exist (join ack pending). */
  #media(step) {
    if (this.publisher && this.subscriber) {
      step().catch((err) => this.log(`media: ${err.message}`));
    } else {
      this.#early.push(step);
    }
  }

  async #join() {
    const generation = ++this.#generation;
    this.#closePeers();
    this.view.clearRemotes();
    let ack;
    try {
      const request = { room: this.room, name: this.name };
      if (this.password) request.password = this.password;
      ack = await this.socket.timeout(JOIN_TIMEOUT_MS).emitWithAck('join', request);
    } catch {
      if (generation === this.#generation) this.#restart('The server did not answer the join. Retrying…');
      return;
    }
    if (generation !== this.#generation) return;
    if (ack?.error?.code === 'room_elsewhere' && ack.error.url) {
      this.#moveTo(ack.error.url);
      return;
    }
    if (ack?.error?.code === 'cluster_unavailable') {
      this.#restart('The meeting service is busy. Retrying…');
      return;
    }
    if (ack?.error) {
      this.#fatal(ack.error);
      return;
    }
    this.#hops = 0;
    this.id = ack.id;
    this.role = ack.role ?? null;
    this.#tell('joined-room', { role: ack.role, policy: ack.policy, members: ack.members ?? [] });
    this.view.rekey(this.localKey, ack.id);
    this.localKey = ack.id;
    for (const m of ack.members ?? []) this.view.upsert(m);
    this.#openPeers(ack.ice_servers ?? [], generation);
    this.#status('connecting', 'Connecting media…');
  }

  #openPeers(iceServers, generation) {
    const log = (msg) => this.log(msg);
    this.publisher = new Publisher(this.socket, iceServers, log, { lowres: this.lowres, simulcast: this.simulcast });
    this.subscriber = new Subscriber(this.socket, iceServers, log, {
      onTrack: (info, track) => {
        this.view.setTrack(info.participant, info.source, track);
        this.#reporter?.schedule();
      },
      onTrackGone: (info) => {
        this.view.setTrack(info.participant, info.source, null);
        this.layers.delete(info.mid);
        this.#reporter?.schedule();
      },
    });
    const subscriber = this.subscriber;
    this.#reporter = new ViewReporter({
      socket: this.socket,
      getTracks: () => subscriber.tracks,
      elementFor: (participant, source) => this.view.videoFor(participant, source),
    });
    for (const peer of [this.publisher, this.subscriber]) {
      peer.pc.addEventListener('connectionstatechange', () => this.#watchIce(peer, generation));
    }
    // Media events that raced ahead of the ack, in their order.
    const early = this.#early;
    this.#early = [];
    for (const step of early) step().catch((err) => this.log(`media: ${err.message}`));
    this.#mediaChanged();
    this.publisher.publish().catch((err) => this.#restart(`Cannot publish media: ${err.message}`));
    // A connection that never comes up is as broken as one that failed.
    this.#iceTimers.set('connect', setTimeout(() => {
      if (generation !== this.#generation) return;
      if (this.publisher?.pc.connectionState !== 'connected') this.#restart('Media did not connect. Reconnecting…');
    }, MEDIA_CONNECT_MS));
  }

  #watchIce(peer, generation) {
    if (generation !== this.#generation) return;
    const state = peer.pc.connectionState;
    if (state === 'connected') {
      clearTimeout(this.#iceTimers.get(peer.name));
      this.#iceTimers.delete(peer.name);
      this.#restarts = 0;
      if (this.publisher?.pc.connectionState === 'connected' && this.subscriber?.pc.connectionState !== 'failed') {
        this.#status('connected', '');
      }
    } else if ((state === 'disconnected' || state === 'failed') && !this.#iceTimers.has(peer.name)) {
      // The server keeps us for media.ice_failed_timeout_ms meanwhile, then says `media_error`.
      this.#status('reconnecting', 'Media connection interrupted. Reconnecting…');
      this.#restartIce(peer, generation, true);
    }
  }

  /** Restarts ICE on `peer` now (`force`) or if it is still not connected, then every ICE_RETRY_MS. */
  #restartIce(peer, generation, force) {
    if (generation !== this.#generation) return;
    if (!force && peer.pc.connectionState === 'connected') {
      this.#iceTimers.delete(peer.name);
      return;
    }
    peer.restartIce().catch((err) => this.log(`${peer.name}: ICE restart: ${err.message}`));
    clearTimeout(this.#iceTimers.get(peer.name));
    this.#iceTimers.set(peer.name, setTimeout(() => this.#restartIce(peer, generation, false), ICE_RETRY_MS));
  }

  #networkChanged() {
    if (!this.id) return;
    for (const peer of [this.publisher, this.subscriber]) {
      if (peer?.pc.remoteDescription) this.#restartIce(peer, this.#generation, true);
    }
  }

  /** Full restart: drop the socket (the server forgets us) and connect again. */
  #restart(text) {
    if (this.#left) return;
    this.#lost(text);
    this.socket.disconnect();
    this.#retryLater();
  }

  async #retryLater() {
    const generation = this.#generation;
    const delay = Math.min(500 * 2 ** this.#restarts, 10_000);
    this.#restarts++;
    await sleep(delay);
    if (!this.#left && generation === this.#generation && !this.socket.connected) this.socket.connect();
  }

  #lost(text) {
    this.#generation++;
    this.id = null;
    this.#closePeers();
    this.view.clearRemotes();
    this.#status('reconnecting', text);
  }

  /** Final: nothing of this session stays behind (a rejoin makes a new one). */
  #end() {
    this.#generation++;
    this.socket.disconnect();
    this.#closePeers();
    this.#unhook.abort();
    this.view.clearRemotes();
    this.view.remove(this.localKey);
  }

  #closePeers() {
    for (const t of this.#iceTimers.values()) clearTimeout(t);
    this.#iceTimers.clear();
    this.publisher?.close();
    this.subscriber?.close();
    this.publisher = this.subscriber = null;
    this.#reporter?.stop();
    this.#reporter = null;
    this.layers.clear();
    this.#early = [];
  }

  /** Local tracks changed (toggle, device switch, screen share): update senders and state. */
  #mediaChanged() {
    const m = this.media;
    if (this.publisher) {
      this.publisher
        .setTracks({ microphone: m.audio, camera: m.video, screen: m.screen })
        .catch((err) => this.log(`replaceTrack: ${err.message}`));
    }
    if (this.view.people.has(this.localKey)) {
      this.view.setTrack(this.localKey, 'camera', m.video);
      this.view.setTrack(this.localKey, 'screen', m.screen);
      this.view.setState(this.localKey, {
        audio_muted: !m.audio || m.audioMuted,
        video_muted: !m.video,
        screen: Boolean(m.screen),
      });
    }
    this.sendState();
  }

  #fatal(error) {
    this.#left = true;
    this.#end();
    this.failure = error;
    this.#status('failed', error.message ?? 'The server refused to let us join.');
    this.#problem(error);
  }

  /** A moderator's action: ours to obey when it concerns us, and shown by the page. */
  #moderated(m) {
    if (m.id === this.id && m.action === 'mute') {
      // The server has stopped forwarding it; muting here too keeps a later unmute from
      // putting our microphone back on without us.
      if (m.source === 'microphone') this.media.setAudioMuted(true);
      if (m.source === 'camera') this.media.setVideoOn(false).catch(() => {});
    }
    if (m.id === this.id && m.action === 'set_role') {
      this.role = m.role;
    }
    this.#tell('moderated', m);
  }

  #tell(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #problem(e) {
    this.dispatchEvent(new CustomEvent('problem', { detail: e }));
  }

  #status(state, text) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('status', { detail: { state, text } }));
  }
}
