// One stream per browser: the tabs elect a leader over Web Locks, and the
// leader relays the stream to the others over a BroadcastChannel. A tab
// that joins asks the leader for what it holds (sync); a tab without Web
// Locks or BroadcastChannel reads its own stream (solo).

import { parseId, keyOf, cmpKey, knowsEpoch, mergeEpochs, epochs } from './ids.js';
import { list, pos, insert, batch, msgsAfter } from './log.js';
import { presence, typingNames, setPresence, setTyping } from './people.js';
import { state, setState, showReset } from './status.js';
import { applyEvents, fillGap } from './events.js';
import { connect, stopStream, openStream, closeStream } from './connection.js';
import { pumpOutbox, sentByOtherTab } from './outbox.js';
import { loadSession } from './gate.js';
import { tabId, role, setRole, streams, openChannel, closeChannel, tell, flushRelay } from './tabs.js';

const SYNC_RETRY = 1500;           // ms before a follower asks the leader again
// Scoped by path, in case two chats share an origin behind a proxy.
const LOCK = 'chat-leader:' + location.pathname;

let synced = false, syncTimer = 0;

// askSync asks the leader for what it holds after this tab's position,
// again every SYNC_RETRY until it answers.
function askSync() {
  if (role !== 'follower') return;
  tell({ t: 'hello', from: tabId, after: pos.cursor });
  clearTimeout(syncTimer);
  syncTimer = setTimeout(() => { if (!synced) askSync(); }, SYNC_RETRY);
}

// onChannel handles what another tab of this browser posted.
function onChannel(d) {
  if (!d || typeof d !== 'object') return;
  if (d.t === 'sent') {
    // Another tab sent one of this browser's messages: show it where its draft was.
    sentByOtherTab(d.m);
    return;
  }
  if (d.t === 'login') {           // another tab logged in (or out): the cookie is shared
    loadSession();
    if (streams() && state === 'locked') connect();
    return;
  }
  if (role === 'leader') {
    if (d.t === 'hello') {
      flushRelay();
      tell({ t: 'sync', to: d.from, after: d.after, msgs: msgsAfter(d.after), cursor: pos.cursor, since: pos.since, epochs, state, presence, typing: typingNames });
    }
    return;
  }
  if (role !== 'follower') return;
  switch (d.t) {
    case 'ev':
      if (Array.isArray(d.evs)) applyEvents(d.evs);
      break;
    case 'sync':
      if (d.to === tabId) onSync(d);
      break;
    case 'state':
      setState(d.s);
      break;
    case 'leader':
      synced = false;
      askSync();
      break;
  }
}

// onSync takes the leader's answer to this tab's hello.
function onSync(d) {
  synced = true;
  clearTimeout(syncTimer);
  mergeEpochs(d.epochs);
  if (Array.isArray(d.msgs)) {
    const first = list.length === 0;
    batch(() => { let n = 0; for (const m of d.msgs) if (insert(m)) n++; return n; }, first);
  }
  // The leader relays only what it holds: all after its `since`. From an
  // older position, the messages in between come from the server's
  // history, or the notice says they are missing.
  const a = parseId(d.after), f = keyOf(d.since);
  const gap = !!(a && f && knowsEpoch(a[0]) && cmpKey(a, f) < 0);
  if (gap && a[0] === f[0]) fillGap(d.after, d.since);
  else if (gap) showReset({ reason: 'gap' });
  if (f && (gap || !parseId(pos.since))) pos.since = d.since;
  if (keyOf(d.cursor)) pos.cursor = d.cursor;
  if (d.state) setState(d.state);
  if (d.presence) setPresence(d.presence);
  if (Array.isArray(d.typing)) setTyping(d.typing);
}

// becomeLeader reads the stream for every tab of this browser, and sends
// what the other tabs left in the outbox.
function becomeLeader() {
  clearTimeout(syncTimer);
  setRole('leader');
  tell({ t: 'leader', from: tabId });
  openStream(true);
  pumpOutbox();
}

// becomeSolo reads the stream for this tab alone.
function becomeSolo() {
  setRole('solo');
  openStream(false);
  pumpOutbox();
}

let lockAbort = null, releaseLock = null;

// join joins the tabs of this browser: follow the leader, and queue for
// the lock. The lock is held for the life of the tab (or until it goes
// into the back/forward cache); the browser then hands it to the next tab.
function join() {
  openChannel(onChannel);
  setRole('follower');
  synced = false;
  lockAbort = new AbortController();
  navigator.locks.request(LOCK, { signal: lockAbort.signal }, () => new Promise((resolve) => {
    releaseLock = resolve;
    becomeLeader();
  })).catch((err) => {
    if (err && err.name === 'AbortError') return;          // we left on purpose
    if (role === 'follower') { leave(); becomeSolo(); }     // locks refused: go it alone
  });
  askSync();
}

// leave stops leading or following: the stream, the lock, the channel.
function leave() {
  closeStream();
  clearTimeout(syncTimer);
  if (lockAbort) lockAbort.abort();      // a request still queued
  if (releaseLock) releaseLock();        // a lock held: the next tab leads
  lockAbort = releaseLock = null;
  closeChannel();
  setRole('none');
}

// startTabs joins this browser's other tabs (or, without Web Locks or
// BroadcastChannel, reads the stream alone). A page kept in the
// back/forward cache is frozen: it must not keep the lock (nobody would
// lead) nor its stream.
export function startTabs() {
  const canShare = typeof BroadcastChannel === 'function' && !!navigator.locks && typeof navigator.locks.request === 'function';
  if (canShare) join(); else becomeSolo();
  window.addEventListener('pagehide', (e) => {
    if (!e.persisted) return;
    if (role === 'solo') stopStream(); else leave();
  });
  window.addEventListener('pageshow', (e) => {
    if (!e.persisted) return;
    if (role === 'solo') connect(); else if (canShare) join();
  });
}
