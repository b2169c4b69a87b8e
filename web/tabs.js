// The tabs of this browser: this tab's role among them and the channel
// between them. One tab (the leader) reads the stream and relays its
// events to the others (followers); without Web Locks or BroadcastChannel
// every tab reads its own stream (solo).

// Scoped by path, in case two chats share an origin behind a proxy.
const CHANNEL = 'chat-v1:' + location.pathname;

// tabId names this tab to the others.
export const tabId = Math.random().toString(36).slice(2) + Date.now().toString(36);

export let role = 'none';          // 'leader' | 'follower' | 'solo' (no Web Locks / BroadcastChannel)

// setRole records this tab's role, also on <html data-role>.
export function setRole(r) {
  role = r;
  document.documentElement.dataset.role = r;
}

// streams reports whether this tab reads the stream itself.
export const streams = () => role === 'leader' || role === 'solo';

let bc = null;                     // the BroadcastChannel while this tab shares one
const listeners = [];              // parts of the page that hear the other tabs too

// listen calls fn with what the other tabs post, while this tab shares a
// channel with them.
export function listen(fn) {
  listeners.push(fn);
}

// openChannel joins the channel of this browser's tabs; onMessage, then
// each listener, gets what the others post.
export function openChannel(onMessage) {
  bc = new BroadcastChannel(CHANNEL);
  bc.addEventListener('message', (e) => {
    onMessage(e.data);
    for (const fn of listeners) fn(e.data);
  });
}

// closeChannel leaves the channel.
export function closeChannel() {
  if (bc) bc.close();
  bc = null;
}

// tell posts d to the other tabs, if this tab shares a channel.
export function tell(d) {
  if (bc) bc.postMessage(d);
}

// Leader -> other tabs. Events are batched per microtask, order is kept.
let relayed = [];

// flushRelay posts the events queued for the other tabs now.
export function flushRelay() {
  if (relayed.length && role === 'leader') bc.postMessage({ t: 'ev', evs: relayed });
  relayed = [];
}

// relay queues a stream event for the other tabs when this tab leads.
export function relay(ev) {
  if (role !== 'leader') return;
  if (relayed.length === 0) queueMicrotask(flushRelay);
  relayed.push(ev);
}
