// The stream (GET /stream), read by the leader or a solo tab only.
//
// Read with fetch rather than EventSource: EventSource hides the status code
// and Retry-After of a refused stream (503 server full, 429), so it could
// only be probed with a second request, which itself takes a stream place.
// Reading the stream ourselves also sees the heartbeat comments, so a dead
// connection that never closes is noticed.

import { retryAfterMs } from './util.js';
import { parseId, validMsg, plain } from './ids.js';
import { NAME_KEY, myName, validName, refusedName, refuseName, nameRefusal, isNameError } from './form.js';
import { pos } from './log.js';
import { validPresence } from './people.js';
import { state, setState } from './status.js';
import { role, streams, relay } from './tabs.js';
import { applyEvents } from './events.js';
import { sseParser } from './sse.js';
import { mentioned } from './notify.js';

export const NAME_SETTLE = 1000;   // ms after the last edit of the name before the stream takes it

let streamCtl = null;              // AbortController of the current stream
let connId = 0;                    // which connect() call is current
let connected = false, everLive = false, failures = 0, retryTimer = 0;
let retryMs = 1000;                // the server's "retry:" field
let lastByteAt = 0, lastPingAt = 0, pingGap = 0, watchdog = 0;

let streamNameNow = '';            // the name the current stream was opened with
// inBacklog: the current stream is new (not resumed) and still sends its
// backlog, which ends with its first presence event: those messages are
// not news to anyone.
let inBacklog = false;
const namedWatchers = [];          // hear of each name a stream was opened with

// onNamed calls fn with the name of each stream the server opened with
// one: this browser's identity holds that name now.
export function onNamed(fn) {
  namedWatchers.push(fn);
}

// wantedName returns the name the stream carries, so that the person is
// on the list: the name last entered in any tab of this browser (they
// share one stream), or this tab's own without Web Locks. Empty (an
// anonymous watcher) until a usable name is entered.
function wantedName() {
  let n = myName();
  if (role === 'leader') {
    try { const v = localStorage.getItem(NAME_KEY); if (v !== null) n = v.trim(); } catch (_) { /* storage blocked */ }
  }
  return validName(n) && n !== refusedName ? n : '';
}

// streamURL is the stream's address: with the name, resuming after the
// last event seen.
function streamURL(name) {
  const q = [];
  if (name) q.push('name=' + encodeURIComponent(name));
  if (pos.cursor) q.push('lastEventId=' + encodeURIComponent(pos.cursor));
  return 'stream' + (q.length ? '?' + q.join('&') : '');
}

// When the name changes, the stream reopens with it, resuming after the
// last message shown, so nothing is missed or repeated.
let nameTimer = 0;

// nameChanged reopens the stream with the new name: now, or once the name
// has settled.
export function nameChanged(now) {
  clearTimeout(nameTimer);
  if (!streams()) return;
  const check = () => {
    if (streams() && wantedName() !== streamNameNow) connect();
  };
  if (now) check(); else nameTimer = setTimeout(check, NAME_SETTLE);
}

// onStreamEvent turns one event of the stream into a page event, applies
// it, and relays it to the other tabs; it drops what it cannot read.
function onStreamEvent(type, data, id) {
  let ev = null;
  if (type === 'message') {
    let m;
    try { m = JSON.parse(data); } catch (_) { return; }
    if (!validMsg(m)) return;
    ev = { k: 'm', m: plain(m) };
  } else if (type === 'edit') {
    let m;
    try { m = JSON.parse(data); } catch (_) { return; }
    if (!validMsg(m)) return;
    ev = { k: 'edit', id, m: plain(m) };
  } else if (type === 'reset') {
    let info = null;
    try { info = JSON.parse(data); } catch (_) { /* keep going */ }
    ev = { k: 'reset', id, info };
  } else if (type === 'delete') {
    let v;
    try { v = JSON.parse(data); } catch (_) { return; }
    if (!v || !parseId(v.id)) return;
    ev = { k: 'del', id, target: v.id };
  } else if (type === 'presence' || type === 'typing') {
    // These carry no id: they say who is here and who types now, and
    // are never replayed.
    let v;
    try { v = JSON.parse(data); } catch (_) { return; }
    if (type === 'presence') {
      if (!validPresence(v)) return;
      ev = { k: 'presence', p: v };
      inBacklog = false;
    } else {
      if (!v || !Array.isArray(v.typing)) return;
      ev = { k: 'typing', names: v.typing.filter((n) => typeof n === 'string') };
    }
  } else if (type === '' && parseId(id)) {
    ev = { k: 'pos', id, fresh: pos.cursor === null };
  } else {
    return;
  }
  applyEvents([ev]);
  relay(ev);
  if (ev.k === 'm' && !inBacklog) mentioned(ev.m);
}

// backoff returns the wait before the next try after one more failure:
// doubling from the server's retry, at most 10 s, with jitter.
function backoff() {
  failures++;
  const base = Math.min(10000, Math.max(retryMs, 250) * 2 ** Math.min(failures - 1, 6));
  return base / 2 + Math.random() * base / 2;
}

// retryLater reconnects after ms.
function retryLater(ms) {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, ms);
}

// stopStream closes the current stream and cancels a pending retry.
export function stopStream() {
  connId++;
  connected = false;
  clearTimeout(retryTimer);
  if (streamCtl) streamCtl.abort();
  streamCtl = null;
}

// connect opens the stream (again), after the last event seen.
export async function connect() {
  if (!streams()) return;
  stopStream();
  const my = connId;
  const ctl = new AbortController();
  streamCtl = ctl;
  if (state !== 'full') setState(everLive ? 'reconnecting' : 'connecting');
  const name = wantedName();
  streamNameNow = name;
  let res;
  try {
    res = await fetch(streamURL(name), { cache: 'no-store', signal: ctl.signal, headers: { Accept: 'text/event-stream' } });
  } catch (_) {
    if (my === connId) { setState(everLive ? 'reconnecting' : 'connecting'); retryLater(backoff()); }
    return;
  }
  if (my !== connId) { ctl.abort(); return; }
  const type = res.headers.get('Content-Type') || '';
  if (!res.ok || !/^text\/event-stream/i.test(type)) {
    // The reason, read before the request is let go.
    let body = null;
    if (res.status === 400 || res.status === 409) {
      try { body = await res.json(); } catch (_) { /* no JSON */ }
    }
    ctl.abort();
    if (my === connId) refused(res, name, body);
    return;
  }
  connected = true; everLive = true; failures = 0;
  inBacklog = pos.cursor === null;
  setState('live');
  if (name) for (const fn of namedWatchers) fn(name);
  lastByteAt = Date.now(); lastPingAt = 0; pingGap = 0;
  const parse = sseParser(onStreamEvent, () => {
    const now = Date.now();
    if (lastPingAt) pingGap = now - lastPingAt;
    lastPingAt = now;
  }, (ms) => { retryMs = Math.min(ms, 60000); });
  const dec = new TextDecoder();
  try {
    const reader = res.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (my !== connId) return;
      if (done) break;
      lastByteAt = Date.now();
      parse(dec.decode(value, { stream: true }));
    }
  } catch (_) {
    if (my !== connId) return;
  }
  // The stream ended (server restart, network): resume where we are.
  connected = false;
  setState('reconnecting');
  retryLater(retryMs + Math.random() * 500);
}

// refused handles a stream the server did not open (its JSON answer body,
// or null): it waits, asks for the key, or tries again without what the
// server refused.
function refused(res, name, body) {
  const ra = retryAfterMs(res);
  if (res.status === 401) {
    // The room needs a key (or the key changed): ask for it; a login
    // in any tab reconnects.
    setState('locked');
  } else if (res.status === 503 || res.status === 429) {
    setState('full');
    const b = backoff();
    retryLater(ra != null ? ra + Math.random() * 1000 : b);
  } else if (name && (res.status === 409 || (res.status === 400 && isNameError(body)))) {
    // The server refuses the name (characters it does not allow, or
    // someone else holds it): say so by the name field, in every tab, and
    // watch without a name until the person picks another.
    refuseName(name, nameRefusal(res.status, body));
    retryLater(0);
  } else if (res.status === 400 && pos.cursor) {
    // The server cannot use our position: start afresh, and say so.
    const ev = { k: 'reset', id: null, info: null };
    applyEvents([ev]);
    relay(ev);
    retryLater(backoff());
  } else {
    setState(everLive ? 'reconnecting' : 'connecting');
    retryLater(backoff());
  }
}

// A connection can die without closing (sleep, NAT, cable): when the
// heartbeats stop for much longer than their interval, reconnect.
function startWatchdog() {
  clearInterval(watchdog);
  watchdog = setInterval(() => {
    if (!connected || !pingGap) return;
    if (Date.now() - lastByteAt > 2 * pingGap + 5000) {
      setState('reconnecting');
      stopStream();
      retryLater(0);
    }
  }, 5000);
}

// openStream starts reading the stream in a tab that has just become the
// leader or solo. A follower taking over keeps saying "reconnecting" if
// the page was live before.
export function openStream(tookOver) {
  if (tookOver) everLive = everLive || state === 'live';
  startWatchdog();
  connect();
}

// closeStream stops the stream, its watchdog and a pending name change:
// the tab no longer leads.
export function closeStream() {
  stopStream();
  clearTimeout(nameTimer);
  clearInterval(watchdog);
}

// startConnection reconnects at once when the browser comes back online.
export function startConnection() {
  window.addEventListener('online', () => {
    if (streams() && !connected) retryLater(0);
  });
}
