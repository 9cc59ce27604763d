// Access control in the page: the password prompt after a refused join, and the moderator's
// panel (mute, remove, promote/demote, lock, end). The server decides; the panel is shown only
// to moderators because the server would refuse anyone else.

const PASSWORD_CODES = new Set(['password_required', 'password_wrong', 'password_rate_limited']);

/** Whether a join refusal asks for the room's password. */
export function wantsPassword(error) {
  return PASSWORD_CODES.has(error?.code);
}

/**
 * Shows a password form inside `container`; calls `onPassword(text)` when submitted.
 * `error` says why (none given, wrong, too many tries).
 */
export function askPassword(container, error, onPassword) {
  container.querySelector('#password-form')?.remove();
  const form = document.createElement('form');
  form.id = 'password-form';
  const label = document.createElement('label');
  label.textContent = error?.code === 'password_required' ? 'This room needs a password' : error?.message ?? '';
  label.htmlFor = 'room-password';
  const input = document.createElement('input');
  Object.assign(input, { id: 'room-password', type: 'password', autocomplete: 'current-password', required: true });
  const button = document.createElement('button');
  Object.assign(button, { type: 'submit', textContent: 'Join' });
  form.append(label, input, button);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    form.remove();
    onPassword(input.value);
  });
  container.append(form);
  input.focus();
}

/** A line that says what a moderator did, for the person it concerns or for everyone. */
export function describeModeration(m, selfId) {
  const me = m.id && m.id === selfId;
  const source = { microphone: 'microphone', camera: 'camera', screen: 'screen share', screen_audio: 'screen audio' }[m.source] ?? m.source;
  switch (m.action) {
    case 'mute': return me ? `A moderator muted your ${source}.` : `A moderator muted someone's ${source}.`;
    case 'unmute': return me ? `Your ${source} may be heard again.` : null;
    case 'remove': return me ? null : 'A moderator removed someone from the room.';
    case 'lock': return 'The room is locked: no one new can join.';
    case 'unlock': return 'The room is open again.';
    case 'end': return 'A moderator ended the meeting.';
    case 'set_role': return me ? `A moderator made you ${m.role}.` : null;
    default: return null;
  }
}

/** The moderator's panel: one row per other member, and the room's own actions. */
export class ModeratorPanel {
  #members = new Map();

  constructor(session, parent) {
    this.session = session;
    this.root = document.createElement('section');
    this.root.id = 'moderator-panel';
    this.root.setAttribute('aria-label', 'Moderation');
    this.root.hidden = true;
    parent.append(this.root);
  }

  setRole(role) {
    this.root.hidden = role !== 'moderator';
    this.render();
  }

  upsert({ id, name }) {
    this.#members.set(id, name);
    this.render();
  }

  remove(id) {
    this.#members.delete(id);
    this.render();
  }

  clear() {
    this.#members.clear();
    this.render();
  }

  render() {
    if (this.root.hidden) return;
    this.root.replaceChildren();
    const act = (label, action) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = label;
      b.dataset.action = action.action;
      if (action.id) b.dataset.target = action.id;
      b.addEventListener('click', () => this.session.moderate(action));
      return b;
    };
    const room = document.createElement('div');
    room.className = 'mod-room';
    room.append(act('Lock', { action: 'lock' }), act('Unlock', { action: 'unlock' }), act('End meeting', { action: 'end' }));
    this.root.append(room);
    for (const [id, name] of this.#members) {
      const row = document.createElement('div');
      row.className = 'mod-member';
      row.dataset.id = id;
      const who = document.createElement('span');
      who.textContent = name;
      row.append(
        who,
        act('Mute mic', { action: 'mute', id, source: 'microphone' }),
        act('Stop camera', { action: 'mute', id, source: 'camera' }),
        act('Make presenter', { action: 'set_role', id, role: 'presenter' }),
        act('Make viewer', { action: 'set_role', id, role: 'viewer' }),
        act('Remove', { action: 'remove', id }),
        act('Ban', { action: 'remove', id, ban: true }),
      );
      this.root.append(row);
    }
  }
}
