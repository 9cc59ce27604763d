// The two PeerConnections of a participant (docs/protocol.md, "media"):
// - Publisher: this page offers; one send-only transceiver per source (microphone, camera,
//   screen), created up front so turning a camera on or starting a screen share is a
//   `replaceTrack`, never a renegotiation.
// - Subscriber: the server offers whenever the set of tracks this page should receive changes;
//   the offer's `tracks` list says which mid carries whose camera, microphone or screen.
// Every signalling step of one connection runs on its own serial queue.

import { SerialQueue } from './util.js';
import { CAMERA_LAYERS, applyLayers } from './simulcast.js';

/** Sources in the order of the publisher's m-lines. */
const PUBLISHED = [
  { source: 'microphone', kind: 'audio' },
  { source: 'camera', kind: 'video' },
  { source: 'screen', kind: 'video' },
];

/** Highest bitrates we ask the browser to send (bits/s); an SFU without simulcast passes them on. */
const MAX_BITRATE = { camera: 1_200_000, screen: 1_500_000, microphone: 64_000 };
const MAX_BITRATE_LOWRES = { camera: 300_000, screen: 400_000, microphone: 32_000 };

class Peer {
  /** @param {string} name 'publisher' | 'subscriber' */
  constructor(name, socket, iceServers, log) {
    this.name = name;
    this.socket = socket;
    this.log = log;
    this.queue = new SerialQueue();
    this.pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
    this.pc.addEventListener('icecandidate', (e) => {
      // An empty candidate string is an end-of-candidates marker: `null` on the wire.
      const candidate = e.candidate && e.candidate.candidate ? e.candidate.toJSON() : null;
      this.socket.emit('candidate', { pc: this.name, candidate });
    });
  }

  /**
   * A candidate from the server, applied after everything received before it. The server may
   * trickle a candidate before its answer is out; such candidates wait for the description.
   */
  addCandidate(candidate) {
    return this.queue.run(() => {
      if (!this.pc.remoteDescription) {
        this.#pending.push(candidate);
        return undefined;
      }
      return this.#apply(candidate);
    });
  }

  /** Call inside a queued step right after setRemoteDescription. */
  async flushCandidates() {
    const pending = this.#pending;
    this.#pending = [];
    for (const c of pending) await this.#apply(c);
  }

  #pending = [];

  #apply(candidate) {
    const step = candidate ? this.pc.addIceCandidate(candidate) : this.pc.addIceCandidate();
    return step.catch((err) => this.log(`${this.name}: cannot add candidate: ${err.message}`));
  }

  close() {
    this.pc.close();
  }
}

export class Publisher extends Peer {
  /** @type {Map<string, RTCRtpTransceiver>} source -> transceiver */
  transceivers = new Map();

  /**
   * `simulcast`: the camera goes out as the three layers of CAMERA_LAYERS (the default for
   * full-size capture; `lowres` pages send one small stream unless asked).
   */
  constructor(socket, iceServers, log, { lowres = false, simulcast = !lowres } = {}) {
    super('publisher', socket, iceServers, log);
    const caps = lowres ? MAX_BITRATE_LOWRES : MAX_BITRATE;
    for (const { source, kind } of PUBLISHED) {
      const sendEncodings =
        source === 'camera' && simulcast ? CAMERA_LAYERS.map((l) => ({ ...l })) : [{ maxBitrate: caps[source] }];
      const t = this.pc.addTransceiver(kind, { direction: 'sendonly', sendEncodings });
      preferVp8(t, kind);
      this.transceivers.set(source, t);
    }
    // Small pictures are asked for by kiosks and automated checks: keep their size exact and
    // let the frame rate give way instead under load.
    if (lowres) for (const source of ['camera', 'screen']) keepResolution(this.transceivers.get(source).sender);
  }

  /** Puts the current local tracks on the senders (null stops sending that source). */
  setTracks({ microphone = null, camera = null, screen = null }) {
    const wanted = { microphone, camera, screen };
    return Promise.all(
      [...this.transceivers].map(([source, t]) =>
        t.sender.track === wanted[source] ? null : t.sender.replaceTrack(wanted[source]),
      ),
    );
  }

  /** Offers and announces which mid carries which source; the answer comes as an event. */
  publish() {
    return this.queue.run(() => this.#offer());
  }

  /**
   * ICE restart: a re-offer with new credentials, same tracks (docs/protocol.md, `restart_ice`).
   * While an offer waits for its answer the caller's next retry does it.
   */
  restartIce() {
    return this.queue.run(async () => {
      if (this.pc.signalingState !== 'stable') return;
      this.pc.restartIce();
      await this.#offer();
    });
  }

  async #offer() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    const tracks = [...this.transceivers].map(([source, t]) => ({ mid: t.mid, source }));
    this.socket.emit('publish_offer', { sdp: this.pc.localDescription.sdp, tracks });
  }

  applyAnswer(sdp) {
    return this.queue.run(async () => {
      await this.pc.setRemoteDescription({ type: 'answer', sdp });
      await this.flushCandidates();
    });
  }

  midOf(source) {
    return this.transceivers.get(source)?.mid ?? null;
  }

  /** The server's `layers`: switch the named simulcast encodings of one mid on or off. */
  setLayers({ mid, active }) {
    const t = [...this.transceivers.values()].find((x) => x.mid === mid);
    if (!t || !active || typeof active !== 'object') return Promise.resolve();
    return applyLayers(t.sender, active).catch((err) => this.log(`publisher: layers: ${err.message}`));
  }
}

/**
 * Remote tracks are reported through `onTrack(info, track)` and `onTrackGone(info)` where
 * `info = {mid, participant, source, kind}`.
 */
export class Subscriber extends Peer {
  /** @type {Map<string, {mid, participant, source, kind}>} mid -> what it carries */
  tracks = new Map();

  constructor(socket, iceServers, log, { onTrack, onTrackGone }) {
    super('subscriber', socket, iceServers, log);
    this.onTrack = onTrack;
    this.onTrackGone = onTrackGone;
  }

  /** ICE restart: the server offers this connection, so it is asked for a restart offer. */
  restartIce() {
    this.socket.emit('restart_ice', { pc: 'subscriber' });
    return Promise.resolve();
  }

  /** Applies a server offer, answers it, then maps mids to participants. */
  applyOffer({ sdp, tracks }) {
    return this.queue.run(async () => {
      await this.pc.setRemoteDescription({ type: 'offer', sdp });
      await this.flushCandidates();
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      this.socket.emit('subscribe_answer', { sdp: this.pc.localDescription.sdp });
      this.#sync(Array.isArray(tracks) ? tracks : []);
    });
  }

  #sync(list) {
    const byMid = new Map(this.pc.getTransceivers().map((t) => [t.mid, t]));
    const next = new Map();
    for (const info of list) {
      const t = byMid.get(info.mid);
      if (t && t.receiver.track) next.set(info.mid, info);
    }
    for (const [mid, old] of this.tracks) {
      const now = next.get(mid);
      if (!now || now.participant !== old.participant || now.source !== old.source) {
        this.onTrackGone(old);
      }
    }
    for (const [mid, info] of next) {
      const old = this.tracks.get(mid);
      if (!old || old.participant !== info.participant || old.source !== info.source) {
        this.onTrack(info, byMid.get(mid).receiver.track);
      }
    }
    this.tracks = next;
  }

  /** mid of a participant's source, for statistics. */
  midOf(participant, source) {
    for (const [mid, info] of this.tracks) {
      if (info.participant === participant && info.source === source) return mid;
    }
    return null;
  }
}

function keepResolution(sender) {
  const params = sender.getParameters();
  params.degradationPreference = 'maintain-resolution';
  sender.setParameters(params).catch(() => {});
}

/** VP8 first: every browser decodes it, and an SFU forwards what the publisher sends. */
function preferVp8(transceiver, kind) {
  if (kind !== 'video' || !transceiver.setCodecPreferences || !RTCRtpReceiver.getCapabilities) return;
  const codecs = RTCRtpReceiver.getCapabilities('video')?.codecs ?? [];
  const vp8 = codecs.filter((c) => /vp8/i.test(c.mimeType));
  if (vp8.length === 0) return;
  const rest = codecs.filter((c) => !/vp8/i.test(c.mimeType));
  try {
    transceiver.setCodecPreferences([...vp8, ...rest]);
  } catch {
    // Some browsers refuse sender capabilities here; their default order is fine.
  }
}
