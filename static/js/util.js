// Small helpers shared by the page's modules: DOM building, a serial queue, name helpers.

/** Creates an element: el('button', {class: 'x', onclick: f}, 'text', child). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(key, '');
    } else {
      node.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An inline icon from the sprite in index.html. */
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  const use = document.createElementNS(ns, 'use');
  use.setAttribute('href', `#i-${name}`);
  svg.append(use);
  return svg;
}

/**
 * Runs async steps one after another. WebRTC signalling steps on one PeerConnection must not
 * interleave (an answer applied while the next offer is being created breaks the state machine),
 * so every step of a connection goes through its own queue. A failed step does not stop the
 * ones after it; its caller sees the rejection.
 */
export class SerialQueue {
  #tail = Promise.resolve();

  run(step) {
    const result = this.#tail.then(step);
    this.#tail = result.catch(() => {});
    return result;
  }
}

/** "Ada Lovelace" -> "AL"; at most two letters. */
export function initials(name) {
  const words = String(name).trim().split(/\s+/).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => Array.from(w)[0] ?? '');
  return letters.join('').toUpperCase() || '?';
}

/** A stable, pleasant hue for a name, so an avatar keeps its colour across reconnects. */
export function hueFor(name) {
  let h = 0;
  for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
