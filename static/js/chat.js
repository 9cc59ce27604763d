// Room text chat: the log, the input, and the unread counter on the toolbar button.

import { el } from './util.js';

const MAX_LINES = 500; // older lines are dropped so a long meeting does not grow the page

export class Chat {
  #unread = 0;

  constructor({ log, form, input, unread, send, isVisible }) {
    Object.assign(this, { log, input, unreadEl: unread, send, isVisible });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      this.send(text);
      this.#append({ name: 'You', content: text, time: clock(), own: true });
      input.value = '';
    });
  }

  /**
   * A line from the server: `{from, name, content, time}`. `content` is whatever JSON the
   * sender chose; only a string is shown. Anything else gets a placeholder, never `String()`:
   * an object like `{"toString": 1}` throws there, and the line would be lost.
   */
  receive(m) {
    const shown = typeof m.content === 'string';
    this.#append({
      name: text(m.name) ?? 'Someone',
      content: shown ? m.content : UNSHOWN,
      time: text(m.time) ?? clock(),
      from: text(m.from),
      unshown: !shown,
    });
    if (!this.isVisible()) {
      this.#unread++;
      this.unreadEl.textContent = String(this.#unread);
      this.unreadEl.hidden = false;
    }
  }

  markRead() {
    this.#unread = 0;
    this.unreadEl.hidden = true;
  }

  #append({ name, content, time, own = false, from, unshown = false }) {
    const stick = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    // Text nodes only: messages come from other people.
    this.log.append(
      el('li', { class: own ? 'own' : '', dataset: from ? { from } : {} },
        el('div', { class: 'meta' }, el('b', {}, name), ' ', el('time', {}, time)),
        el('div', { class: unshown ? 'text unshown' : 'text' }, content)),
    );
    while (this.log.childElementCount > MAX_LINES) this.log.firstElementChild.remove();
    if (stick || own) this.log.scrollTop = this.log.scrollHeight;
  }
}

/** What stands in for a message whose content is not text. */
const UNSHOWN = '(a message this page cannot show)';

/** `value` if it is a string, else undefined. */
function text(value) {
  return typeof value === 'string' ? value : undefined;
}

function clock() {
  const d = new Date();
  return `${d.getHours()}:${String(d.getMinutes()).padStart(2, '0')}`;
}
