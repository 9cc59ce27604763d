// Bounded waits on Socket.IO clients, shared by the Node tests.

export const WAIT_MS = 10000;

/** Resolves with the arguments of the next `event` on `socket`, bounded. */
export function next(socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, on);
      reject(new Error(`no ${event} within ${WAIT_MS} ms`));
    }, WAIT_MS);
    const on = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    socket.once(event, on);
  });
}

/** Emits with an acknowledgement and resolves with its first argument, bounded. */
export function ack(socket, event, payload) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack for ${event}`)), WAIT_MS);
    socket.emit(event, payload, (reply) => {
      clearTimeout(timer);
      resolve(reply);
    });
  });
}

/** Collects every `event` on `socket` from now on. */
export function record(socket, event) {
  const got = [];
  socket.on(event, (...args) => got.push(args[0]));
  return got;
}
