// The page's entry point: the lobby (name, room, devices, preview), the meeting's controls,
// chat and side panel, and the hand-over to a Session. URL parameters:
// `room`, `name`, `autojoin=1` (join at once), `lowres=1` (320x240 at 15 fps), `cam=0`, `mic=0`.

import { LocalMedia } from './media.js';
import { RoomView } from './room-view.js';
import { Session } from './session.js';
import { StatsMonitor } from './stats.js';
import { initials, hueFor } from './util.js';
import { Chat } from './chat.js';
import { ModeratorPanel, askPassword, describeModeration, wantsPassword } from './access.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const lowres = params.get('lowres') === '1';
const media = new LocalMedia({ lowres });
if (params.get('cam') === '0') media.videoDevice = null;
if (params.get('mic') === '0') media.audioDevice = null;

const view = new RoomView({
  grid: $('grid'),
  stage: $('stage'),
  roster: $('people-list'),
  count: $('room-count'),
  onAudioBlocked: () => banner('Sound is blocked by the browser.', 'Enable sound', () => view.resumeAudio()),
});
/** @type {Session|null} */
let session = null;
const monitor = new StatsMonitor({ view, getSession: () => session });
const chat = new Chat({
  log: $('chat-log'),
  form: $('chat-form'),
  input: $('chat-input'),
  unread: $('unread'),
  send: (text) => session?.sendChat(text),
  isVisible: () => !$('side').hidden && !$('chat-panel').hidden,
});

// Tests read connection internals here; the DOM is the interface for everything else.
window.sfuLite = {
  get session() { return session; },
  get publisher() { return session?.publisher ?? null; },
  get subscriber() { return session?.subscriber ?? null; },
  get id() { return session?.id ?? null; },
  media,
};

// ---- lobby -------------------------------------------------------------------------------

const nameInput = $('name');
const roomInput = $('room');
nameInput.value = params.get('name') ?? localStorage.getItem('sfu-lite:name') ?? '';
roomInput.value = params.get('room') ?? '';

function renderPreview() {
  $('preview').srcObject = media.video ? new MediaStream([media.video]) : null;
  $('preview').hidden = !media.video;
  const avatar = $('preview-avatar');
  avatar.hidden = Boolean(media.video);
  avatar.textContent = initials(nameInput.value || '?');
  avatar.style.setProperty('--hue', hueFor(nameInput.value || '?'));
  setToggle($('pre-mic'), media.audio && !media.audioMuted, 'mic', 'Microphone on', 'Microphone off');
  setToggle($('pre-cam'), Boolean(media.video), 'cam', 'Camera on', 'Camera off');
  renderControls();
}

function setToggle(button, on, iconName, onLabel, offLabel) {
  button.setAttribute('aria-pressed', String(Boolean(on)));
  button.setAttribute('aria-label', on ? onLabel : offLabel);
  button.classList.toggle('off', !on);
  button.querySelector('use').setAttribute('href', `#i-${iconName}${on ? '' : '-off'}`);
}

async function fillDevices() {
  const { audio, video } = await media.devices();
  const fill = (select, list, noun, current) => {
    const keep = current === null ? 'none' : current;
    select.replaceChildren();
    select.append(new Option(`Default ${noun}`, ''));
    list.forEach((d, i) => d.deviceId && select.append(new Option(d.label || `${noun} ${i + 1}`, d.deviceId)));
    select.append(new Option(`No ${noun}`, 'none'));
    select.value = [...select.options].some((o) => o.value === keep) ? keep : '';
  };
  for (const id of ['camera-select', 'camera-select-2']) fill($(id), video, 'camera', media.videoDevice);
  for (const id of ['mic-select', 'mic-select-2']) fill($(id), audio, 'microphone', media.audioDevice);
}

function lobbyError(text) {
  $('lobby-error').textContent = text ?? '';
  $('lobby-error').hidden = !text;
}

media.addEventListener('change', renderPreview);
nameInput.addEventListener('input', renderPreview);
$('pre-mic').addEventListener('click', async () => {
  if (!media.audio) {
    if (media.audioDevice === null) media.audioDevice = '';
    lobbyError(await media.open({ audio: true, video: false }));
    media.setAudioMuted(false);
  } else {
    media.setAudioMuted(!media.audioMuted);
  }
});
$('pre-cam').addEventListener('click', async () => lobbyError(await media.setVideoOn(!media.video)));
const SELECTS = [['camera-select', 'video'], ['mic-select', 'audio'], ['camera-select-2', 'video'], ['mic-select-2', 'audio']];
for (const [id, kind] of SELECTS) {
  $(id).addEventListener('change', async (e) => {
    const v = e.target.value;
    const err = await media.chooseDevice(kind, v === 'none' ? null : v);
    if ($('meeting').hidden) lobbyError(err);
    else if (err) toast(err);
    await fillDevices().catch(() => {});
  });
}

$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  monitor.unlockAudio();
  join();
});

function join() {
  const name = nameInput.value.trim();
  const room = roomInput.value.trim();
  if (!name) return lobbyError('Please enter your name.') || nameInput.focus();
  if (!/^[A-Za-z0-9._-]+$/.test(room)) {
    return lobbyError('Room names use letters, digits, dot, dash and underscore.') || roomInput.focus();
  }
  lobbyError(null);
  localStorage.setItem('sfu-lite:name', name);
  history.replaceState(null, '', `?${new URLSearchParams({ room, ...(lowres ? { lowres: '1' } : {}) })}`);
  enterRoom(room, name);
}

// ---- the meeting -------------------------------------------------------------------------

// An invitation link carries `?token=`; it stays in memory, out of the address bar.
const token = params.get('token');
let password = null;

function enterRoom(room, name) {
  $('lobby').hidden = true;
  $('goodbye').hidden = true;
  $('meeting').hidden = false;
  $('room-title').textContent = room;
  document.title = `${room} · sfu-lite`;
  session = new Session({ room, name, media, view, lowres, token, password, log: (m) => console.warn(`sfu-lite: ${m}`) });
  const panel = new ModeratorPanel(session, $('meeting'));
  session.addEventListener('joined-room', (e) => {
    panel.clear();
    panel.setRole(e.detail.role);
    for (const m of e.detail.members) panel.upsert(m);
  });
  session.addEventListener('member', (e) => panel.upsert(e.detail));
  session.addEventListener('member-left', (e) => panel.remove(e.detail.id));
  session.addEventListener('moderated', (e) => {
    const m = e.detail;
    if (m.action === 'set_role' && m.id === session.id) panel.setRole(m.role);
    const line = describeModeration(m, session.id);
    if (line) {
      $('meeting').dataset.moderated = m.action;
      toast(line);
    }
    renderControls();
  });
  session.addEventListener('status', (e) => onStatus(e.detail));
  session.addEventListener('chat', (e) => chat.receive(e.detail));
  session.addEventListener('problem', (e) => toast(e.detail?.message ?? 'The server refused a request.'));
  monitor.start();
  session.start();
  renderControls();
}

function onStatus({ state, text }) {
  $('meeting').dataset.state = state;
  if (state === 'connected') banner(null);
  else if (state === 'left') {
    media.stopScreen();
    media.stopAll(); // the camera light goes out when we leave
    showGoodbye('You left the meeting', '');
  }
  else if (state === 'failed') {
    const failure = session?.failure;
    if (wantsPassword(failure)) {
      showGoodbye('This room is protected', failure.code === 'password_required' ? '' : text);
      askPassword($('goodbye').querySelector('section'), failure, (given) => {
        password = given;
        enterRoom(session.room, session.name);
      });
    } else if (failure?.code === 'removed' || failure?.code === 'room_ended') {
      showGoodbye(failure.code === 'removed' ? 'You were removed' : 'The meeting has ended', text);
    } else showGoodbye('Could not join', text);
  }
  else banner(text);
}

function showGoodbye(title, text) {
  monitor.stop();
  banner(null);
  $('meeting').hidden = true;
  $('goodbye').hidden = false;
  $('goodbye-title').textContent = title;
  $('goodbye-text').textContent = text;
  $('rejoin').focus();
}

function banner(text, actionLabel, action) {
  $('banner').hidden = !text;
  $('banner-text').textContent = text ?? '';
  const button = $('banner-action');
  button.hidden = !actionLabel;
  button.textContent = actionLabel ?? '';
  button.onclick = action ? () => { action(); banner(null); } : null;
}

let toastTimer;
function toast(text) {
  $('toast').textContent = text;
  $('toast').hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { $('toast').hidden = true; }, 5000);
}

function renderControls() {
  const micOn = Boolean(media.audio) && !media.audioMuted;
  const camOn = Boolean(media.video);
  const screenOn = Boolean(media.screen);
  toolState($('btn-mic'), !micOn, micOn ? 'mic' : 'mic-off', micOn ? 'Mute' : 'Unmute');
  toolState($('btn-cam'), !camOn, camOn ? 'cam' : 'cam-off', camOn ? 'Stop video' : 'Start video');
  toolState($('btn-screen'), screenOn, 'screen', screenOn ? 'Stop sharing' : 'Share screen');
  $('btn-screen').hidden = !navigator.mediaDevices?.getDisplayMedia;
}

function toolState(button, pressed, iconName, label) {
  button.setAttribute('aria-pressed', String(pressed));
  // The accessible name stays fixed (aria-label) and aria-pressed says the state; the visible
  // word follows the action, as people expect.
  button.title = label;
  button.querySelector('use').setAttribute('href', `#i-${iconName}`);
  button.querySelector('span').textContent = label;
}

$('btn-mic').addEventListener('click', toggleMic);
$('btn-cam').addEventListener('click', toggleCam);
$('btn-screen').addEventListener('click', async () => {
  if (media.screen) media.stopScreen();
  else {
    const err = await media.startScreen();
    if (err) toast(err);
  }
});
$('btn-settings').addEventListener('click', async () => {
  await fillDevices().catch(() => {});
  $('settings').showModal();
});
$('btn-stats').addEventListener('click', () => {
  const on = !view.statsVisible;
  view.setStatsVisible(on);
  $('btn-stats').setAttribute('aria-pressed', String(on));
});
$('btn-people').addEventListener('click', () => toggleSide('people'));
$('btn-chat').addEventListener('click', () => toggleSide('chat'));
$('tab-people').addEventListener('click', () => showTab('people'));
$('tab-chat').addEventListener('click', () => showTab('chat'));
$('side-close').addEventListener('click', () => toggleSide(null));
$('btn-leave').addEventListener('click', () => session?.leave());
$('rejoin').addEventListener('click', async () => {
  monitor.unlockAudio();
  await media.open();
  enterRoom($('room-title').textContent, nameInput.value.trim());
});
$('copy-link').addEventListener('click', async () => {
  const url = `${location.origin}${location.pathname}?room=${encodeURIComponent($('room-title').textContent)}`;
  try {
    await navigator.clipboard.writeText(url);
    toast('Invitation link copied.');
  } catch {
    toast(url);
  }
});

async function toggleMic() {
  if (!media.audio) {
    if (media.audioDevice === null) media.audioDevice = '';
    const err = await media.open({ audio: true, video: false });
    if (err) return toast(err);
    media.setAudioMuted(false);
  } else media.setAudioMuted(!media.audioMuted);
}

async function toggleCam() {
  const err = await media.setVideoOn(!media.video);
  if (err) toast(err);
}

function toggleSide(tab) {
  const side = $('side');
  const current = side.hidden ? null : $('chat-panel').hidden ? 'people' : 'chat';
  const next = tab === current ? null : tab;
  side.hidden = next === null;
  $('btn-people').setAttribute('aria-pressed', String(next === 'people'));
  $('btn-chat').setAttribute('aria-pressed', String(next === 'chat'));
  if (next) showTab(next);
}

function showTab(tab) {
  $('people-panel').hidden = tab !== 'people';
  $('chat-panel').hidden = tab !== 'chat';
  $('tab-people').setAttribute('aria-selected', String(tab === 'people'));
  $('tab-chat').setAttribute('aria-selected', String(tab === 'chat'));
  $('btn-people').setAttribute('aria-pressed', String(tab === 'people'));
  $('btn-chat').setAttribute('aria-pressed', String(tab === 'chat'));
  if (tab === 'chat') {
    chat.markRead();
    $('chat-input').focus();
  }
}

// Keyboard: Ctrl/Cmd+D mute, Ctrl/Cmd+E camera (the shortcuts people know from other tools).
document.addEventListener('keydown', (e) => {
  if ($('meeting').hidden || !(e.ctrlKey || e.metaKey) || e.altKey) return;
  const key = e.key.toLowerCase();
  if (key === 'd') { e.preventDefault(); toggleMic(); }
  if (key === 'e') { e.preventDefault(); toggleCam(); }
});
// Closing the tab: the socket closes and the server removes us; say goodbye explicitly too.
addEventListener('pagehide', () => session?.socket.disconnect());

// ---- start -------------------------------------------------------------------------------

(async () => {
  renderPreview();
  lobbyError(await media.open());
  await fillDevices().catch(() => {});
  navigator.mediaDevices?.addEventListener?.('devicechange', () => fillDevices().catch(() => {}));
  if (params.get('autojoin') === '1') join();
  else (nameInput.value ? roomInput : nameInput).focus();
})();
