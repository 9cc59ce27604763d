// Local media: camera, microphone and screen capture, their constraints and device choice.
// Knows nothing of signalling: the session asks for tracks and hands them to the publisher.

/** Capture settings; `lowres` (from `?lowres=1`) keeps automated checks cheap. */
export function videoConstraints(lowres, deviceId) {
  const size = lowres
    ? { width: { ideal: 320 }, height: { ideal: 240 }, frameRate: { ideal: 15, max: 15 } }
    : { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } };
  return deviceId ? { ...size, deviceId: { exact: deviceId } } : size;
}

function audioConstraints(deviceId) {
  const base = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  return deviceId ? { ...base, deviceId: { exact: deviceId } } : base;
}

export class LocalMedia extends EventTarget {
  /** @type {MediaStreamTrack|null} */ audio = null;
  /** @type {MediaStreamTrack|null} */ video = null;
  /** @type {MediaStreamTrack|null} */ screen = null;
  /** Chosen devices; '' = the default one, null = none wanted. */
  audioDevice = '';
  videoDevice = '';
  audioMuted = false;

  constructor({ lowres = false } = {}) {
    super();
    this.lowres = lowres;
  }

  get videoMuted() {
    return !this.video;
  }

  /** Opens what is wanted and not yet open. Returns an error message or null. */
  async open({ audio = true, video = true } = {}) {
    const wantAudio = audio && this.audioDevice !== null && !this.audio;
    const wantVideo = video && this.videoDevice !== null && !this.video;
    if (!wantAudio && !wantVideo) return null;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: wantAudio ? audioConstraints(this.audioDevice) : false,
        video: wantVideo ? videoConstraints(this.lowres, this.videoDevice) : false,
      });
      for (const track of stream.getTracks()) this.#adopt(track);
      return null;
    } catch (err) {
      // One device missing must not cost the other: retry each alone.
      if (wantAudio && wantVideo) {
        const a = await this.open({ audio: true, video: false });
        const v = await this.open({ audio: false, video: true });
        return a ?? v;
      }
      return describeMediaError(err);
    }
  }

  #adopt(track) {
    if (track.kind === 'audio') {
      this.audio?.stop();
      this.audio = track;
      track.enabled = !this.audioMuted;
    } else {
      this.video?.stop();
      this.video = track;
    }
    // A device unplugged mid-call ends its track: report it as switched off.
    track.addEventListener('ended', () => {
      if (this.audio === track) this.audio = null;
      if (this.video === track) this.video = null;
      this.#changed();
    });
    this.#changed();
  }

  setAudioMuted(muted) {
    this.audioMuted = muted;
    if (this.audio) this.audio.enabled = !muted;
    this.#changed();
  }

  /** Camera off releases the device (its light goes out); on opens it again. */
  async setVideoOn(on) {
    if (!on) {
      this.video?.stop();
      this.video = null;
      this.#changed();
      return null;
    }
    if (this.videoDevice === null) this.videoDevice = '';
    return this.open({ audio: false, video: true });
  }

  /**
   * Switches to another device (null: none). The new device opens before the old one stops,
   * so the others see no gap; if it cannot open, the old one stays.
   */
  async chooseDevice(kind, deviceId) {
    const field = kind === 'audio' ? 'audio' : 'video';
    const before = kind === 'audio' ? this.audioDevice : this.videoDevice;
    if (kind === 'audio') this.audioDevice = deviceId;
    else this.videoDevice = deviceId;
    if (deviceId === null) {
      this[field]?.stop();
      this[field] = null;
      this.#changed();
      return null;
    }
    // A camera switched off stays off (only the choice is remembered); picking a camera after
    // "No camera" turns it on.
    if (kind === 'video' && !this.video && before !== null) return null;
    try {
      const stream = await navigator.mediaDevices.getUserMedia(
        kind === 'audio'
          ? { audio: audioConstraints(deviceId) }
          : { video: videoConstraints(this.lowres, deviceId) },
      );
      this.#adopt(stream.getTracks()[0]);
      return null;
    } catch (err) {
      return describeMediaError(err);
    }
  }

  async devices() {
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      audio: all.filter((d) => d.kind === 'audioinput'),
      video: all.filter((d) => d.kind === 'videoinput'),
    };
  }

  /** Starts a screen capture; must run inside a user gesture (a click). */
  async startScreen() {
    if (this.screen) return null;
    try {
      const video = this.lowres
        ? { width: { max: 640 }, height: { max: 480 }, frameRate: { max: 5 } }
        : { frameRate: { ideal: 15, max: 30 } };
      const stream = await navigator.mediaDevices.getDisplayMedia({ video, audio: false });
      const track = stream.getVideoTracks()[0];
      track.contentHint = 'detail';
      this.screen = track;
      // The browser's own "Stop sharing" bar ends the track.
      track.addEventListener('ended', () => this.stopScreen());
      this.#changed();
      return null;
    } catch (err) {
      return err?.name === 'NotAllowedError' ? null : describeMediaError(err);
    }
  }

  stopScreen() {
    if (!this.screen) return;
    this.screen.stop();
    this.screen = null;
    this.#changed();
  }

  stopAll() {
    for (const t of [this.audio, this.video, this.screen]) t?.stop();
    this.audio = this.video = this.screen = null;
    this.#changed();
  }

  #changed() {
    this.dispatchEvent(new Event('change'));
  }
}

export function describeMediaError(err) {
  switch (err?.name) {
    case 'NotAllowedError':
      return 'Access to camera or microphone was refused. Allow it in the address bar to be seen and heard.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera or microphone found.';
    case 'NotReadableError':
      return 'The camera or microphone is busy in another application.';
    default:
      return `Cannot open camera or microphone: ${err?.message ?? err}`;
  }
}
