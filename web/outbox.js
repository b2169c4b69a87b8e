// The outbox: every message is sent exactly once.
//
// A message goes into the outbox (localStorage, so it survives a reload or
// a closed tab) with a fresh Idempotency-Key, and is shown as "Sending…".
// The tab that wrote it sends it at once, holding it on a lease that each
// attempt renews; the tab that leads (or a solo tab) sends whatever is
// left: messages of tabs that were reloaded or closed (they give their
// lease up on pagehide) or whose lease ran out. Each tab sends in the order
// the messages were written, and retries a message with the same key after a network error,
// a timeout, 429, 502, 503 or 504, with a backoff that honours Retry-After:
// the server stores a retried message once. A refused message (400, 413,
// 415, 422, ...) stays with the server's reason until it is edited or
// discarded. A message whose name the server refused (409: someone else
// holds it; 400 about the name) waits for the person to pick another
// name, and is then sent under it. Where localStorage is blocked, the
// outbox lives in this tab.

import { $, retryAfterMs, secs } from './util.js';
import { parseId, validMsg, plain } from './ids.js';
import { nameIn, msgIn, sendBtn, myName, validName, updateSend, showError, clearError,
  refusedName, refuseName, nameRefusal, isNameError, askForName } from './form.js';
import { byId, fill, insert, batch, atBottom, scrollToBottom, updateEmpty } from './log.js';
import { rememberOwn } from './own.js';
import { fold } from './mentions.js';
import { typingSent } from './people.js';
import { roomKeyNeeded } from './gate.js';
import { tabId, streams, tell } from './tabs.js';

const POST_TIMEOUT = 15000;        // ms before a POST /post counts as lost and is retried
const RETRY_MAX = 30000;           // ms, the longest wait between retries of the outbox
const LEASE = 45000;               // ms a tab keeps the messages it sends to itself (more than RETRY_MAX)
// The outbox: one localStorage entry per unsent message, so tabs never overwrite each other.
const OUTBOX = 'chat.outbox:' + location.pathname + ':';

const outboxEl = $('outbox');

let memOutbox = null;              // the outbox when localStorage cannot be used
try { localStorage.setItem(OUTBOX + 'probe', '1'); localStorage.removeItem(OUTBOX + 'probe'); } catch (_) { memOutbox = new Map(); }
let outboxSeq = 0;                 // orders messages written in the same millisecond by this tab

// newKey returns a fresh Idempotency-Key (a version 4 UUID).
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));   // randomUUID needs a secure context
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
}

// validItem reports whether it has the shape of an outbox entry. An entry
// may also hold error (why the server refused it), status, nameWait (the
// name the server refused, while it waits for another), by and until (the
// tab that sends it, and until when).
function validItem(it) {
  return it && typeof it.key === 'string' && typeof it.username === 'string' && typeof it.content === 'string' &&
    typeof it.at === 'number' && typeof it.n === 'number';
}

// outboxItems returns the outbox, oldest first.
function outboxItems() {
  const out = [];
  if (memOutbox) {
    out.push(...memOutbox.values());
  } else {
    try {
      for (let i = 0; i < localStorage.length; i++) {
        const k = localStorage.key(i);
        if (!k || !k.startsWith(OUTBOX)) continue;
        try {
          const it = JSON.parse(localStorage.getItem(k));
          if (validItem(it) && OUTBOX + it.key === k) out.push(it);
        } catch (_) { /* a damaged entry: skip it */ }
      }
    } catch (_) { /* storage went away */ }
  }
  return out.sort((a, b) => a.at - b.at || a.n - b.n || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

// outboxGet returns the outbox entry of key, or null.
function outboxGet(key) {
  if (memOutbox) return memOutbox.get(key) || null;
  try { const it = JSON.parse(localStorage.getItem(OUTBOX + key)); return validItem(it) ? it : null; } catch (_) { return null; }
}

// outboxPut stores entry it.
function outboxPut(it) {
  if (memOutbox) { memOutbox.set(it.key, it); return; }
  try { localStorage.setItem(OUTBOX + it.key, JSON.stringify(it)); } catch (_) {
    memOutbox = new Map();      // full or blocked: keep this tab's outbox in memory from now on
    memOutbox.set(it.key, it);
  }
}

// outboxDelete takes the entry of key out of the outbox.
function outboxDelete(key) {
  if (memOutbox) memOutbox.delete(key);
  else try { localStorage.removeItem(OUTBOX + key); } catch (_) { /* ignore */ }
}

// leads reports whether this tab sends the messages other tabs left behind.
const leads = () => streams() || memOutbox !== null;
// mayTake reports whether this tab may send it now: its own, or, when it
// leads, one whose lease is over.
const mayTake = (it, now) => it.by === tabId || (leads() && !(it.until > now));

const outEls = new Map();          // key -> element
const outNotes = new Map();        // key -> why this tab is waiting to retry it

// renderOutbox shows the outbox at the end of the log, reusing the
// elements it has.
function renderOutbox() {
  const items = outboxItems();
  const keep = new Set(items.map((it) => it.key));
  for (const [k, el] of outEls) if (!keep.has(k)) { el.remove(); outEls.delete(k); }
  const stick = atBottom();
  let added = false;
  for (const it of items) {
    let el = outEls.get(it.key);
    if (!el) { el = makeOutEl(it); outEls.set(it.key, el); added = true; }
    fillOutEl(el, it);
    outboxEl.appendChild(el);   // moves it into order
  }
  updateEmpty();
  if (added && stick) scrollToBottom();
}

// makeOutEl returns the element of an outbox entry, with its Edit and
// Discard buttons.
function makeOutEl(it) {
  const el = document.createElement('article');
  el.className = 'out';
  el.dataset.key = it.key;
  const meta = document.createElement('div');
  meta.className = 'meta';
  const name = document.createElement('bdi');
  name.className = 'name';
  const st = document.createElement('span');
  st.className = 'out-state';
  st.setAttribute('role', 'status');
  const body = document.createElement('div');
  body.className = 'content';
  body.dir = 'auto';
  const actions = document.createElement('div');
  actions.className = 'out-actions';
  const edit = document.createElement('button');
  edit.type = 'button'; edit.className = 'out-edit'; edit.textContent = 'Edit';
  edit.addEventListener('click', () => editItem(el.dataset.key));
  const discard = document.createElement('button');
  discard.type = 'button'; discard.className = 'out-discard'; discard.textContent = 'Discard';
  discard.addEventListener('click', () => discardItem(el.dataset.key));
  actions.append(edit, discard);
  meta.append(name, ' ', st);
  el.append(meta, body, actions);
  return el;
}

// fillOutEl shows the entry it in el: sending, or why the server refused it.
function fillOutEl(el, it) {
  el.querySelector('.name').textContent = it.username;
  el.querySelector('.content').textContent = it.content;
  const failed = typeof it.error === 'string', waits = typeof it.nameWait === 'string';
  el.classList.toggle('failed', failed || waits);
  const note = outNotes.get(it.key);
  el.querySelector('.out-state').textContent = failed ? 'Not sent: ' + it.error
    : waits ? 'Not sent yet: the name is taken or not allowed; it goes once you choose another name'
      : 'Sending…' + (note ? ' (' + note + ')' : '');
  el.querySelector('.out-actions').hidden = !failed && !waits;
}

// editItem takes a refused message back into the form.
function editItem(key) {
  const it = outboxGet(key);
  outboxDelete(key);
  renderOutbox();
  if (!it) return;
  const cur = msgIn.value;
  msgIn.value = cur.trim() === '' ? it.content : cur + '\n' + it.content;
  updateSend();
  msgIn.focus();
}

// discardItem drops a refused message.
function discardItem(key) {
  outboxDelete(key);
  renderOutbox();
  msgIn.focus();
}

let pumping = false, pumpTimer = 0, sendFailures = 0, nextTryAt = 0;

// pumpOutbox sends the outbox, oldest first, one message at a time, until
// it is empty or a message must wait for a retry.
export async function pumpOutbox() {
  if (pumping) return;
  clearTimeout(pumpTimer);
  pumping = true;
  try {
    for (;;) {
      const now = Date.now();
      const open = outboxItems().filter((x) => typeof x.error !== 'string' && typeof x.nameWait !== 'string');
      const it = open.find((x) => mayTake(x, now));
      if (!it) {
        // Held by other tabs: the leader looks again when the first lease ends.
        const ends = open.map((x) => x.until).filter((u) => typeof u === 'number' && u > now);
        if (leads() && ends.length) pumpTimer = setTimeout(pumpOutbox, Math.min(...ends) - now + 50);
        if (!open.some((x) => x.by === tabId)) sendFailures = 0;
        break;
      }
      const wait = nextTryAt - now;
      if (wait > 0) { pumpTimer = setTimeout(pumpOutbox, wait); break; }
      // Take it (or renew this tab's lease) for this attempt.
      it.by = tabId;
      it.until = now + LEASE;
      outboxPut(it);
      if (!(await sendItem(it))) { pumpTimer = setTimeout(pumpOutbox, Math.max(0, nextTryAt - Date.now())); break; }
    }
  } finally {
    pumping = false;
  }
}

// sendItem posts one message of the outbox; it reports false when it must
// be retried later.
async function sendItem(it) {
  let res, body = null;
  try {
    res = await fetch('post', {
      method: 'POST',
      cache: 'no-store',
      headers: { 'Content-Type': 'application/json', 'Idempotency-Key': it.key },
      body: JSON.stringify({ username: it.username, content: it.content }),
      signal: AbortSignal.timeout ? AbortSignal.timeout(POST_TIMEOUT) : undefined,
    });
  } catch (_) {
    // No answer: the message may or may not be stored; the retry with the
    // same key settles it.
    return retryItem(it, null, navigator.onLine === false ? 'offline' : 'no connection');
  }
  try { body = await res.json(); } catch (_) {
    body = null;
    if (res.ok) return retryItem(it, null, 'no connection');   // the answer was cut short
  }
  if ((res.status === 200 || res.status === 201) && validMsg(body)) {
    sendFailures = 0; nextTryAt = 0;
    outNotes.delete(it.key);
    outboxDelete(it.key);
    rememberOwn(body.id);
    const known = byId.get(parseId(body.id).join('-'));
    if (known) fill(known);          // the stream was first: mark it as this browser's now
    tell({ t: 'sent', key: it.key, m: plain(body) });
    batch(() => (insert(body) ? 1 : 0), true);
    renderOutbox();
    return true;
  }
  if (res.status === 409 || (res.status === 400 && isNameError(body))) {
    waitForName(it.username);
    refuseName(it.username, nameRefusal(res.status, body));
    outNotes.delete(it.key);
    renderOutbox();
    // The person just pressed Send: the name field is where to go next.
    if ([msgIn, sendBtn, document.body].includes(document.activeElement) && myName() === it.username) askForName();
    return true;   // go on with the next message (under another name)
  }
  const ra = retryAfterMs(res);
  if (res.status === 429) return retryItem(it, ra, 'sending too fast');
  if (res.status >= 500 || res.ok) return retryItem(it, ra, res.status === 503 ? 'server busy' : 'server error');
  const serverText = body && typeof body.error === 'string' ? body.error.trim().replace(/[.!]+$/, '') : '';
  let why;
  switch (res.status) {
    case 401: why = 'the room needs its key again'; roomKeyNeeded(); break;
    case 413: why = 'it is too long for the server'; break;
    case 400: case 415: case 422: why = serverText || 'the server refused it'; break;
    default: why = 'HTTP ' + res.status + (serverText ? ': ' + serverText : '');
  }
  const cur = outboxGet(it.key);
  if (cur) { cur.error = why; cur.status = res.status; outboxPut(cur); }
  // Also next to the form, where the person looks after pressing Send.
  showError('The server did not accept the message: ' + why + '.');
  outNotes.delete(it.key);
  renderOutbox();
  return true;   // go on with the next message
}

// retryItem schedules the next attempt after a backoff (or the server's
// Retry-After), and shows why.
function retryItem(it, ra, note) {
  sendFailures++;
  const base = Math.min(RETRY_MAX, 1000 * 2 ** Math.min(sendFailures - 1, 5));
  const ms = ra != null ? Math.max(ra, 250) : base / 2 + Math.random() * base / 2;
  nextTryAt = Date.now() + ms;
  outNotes.set(it.key, note + ', retrying in ' + secs(ms) + ' s');
  renderOutbox();
  return false;
}

// waitForName holds every unsent message under name n until the person
// picks another name.
function waitForName(n) {
  for (const it of outboxItems()) {
    if (it.username === n && typeof it.error !== 'string') { it.nameWait = n; outboxPut(it); }
  }
}

// release sends, under name n, the messages waiting for a name for which
// match(the refused name) reports true.
function release(match, n) {
  let changed = false;
  for (const it of outboxItems()) {
    if (typeof it.nameWait !== 'string' || !match(it.nameWait)) continue;
    it.username = n;
    delete it.nameWait;
    outboxPut(it);
    changed = true;
  }
  if (changed) { renderOutbox(); pumpOutbox(); }
}

// nameChosen sends the messages that wait for a name under the name in
// the form, once it is one the server may take: not the refused name
// (nor one that compares equal to it).
export function nameChosen() {
  const n = myName();
  if (validName(n) && n !== refusedName) release((w) => fold(w) !== fold(n), n);
}

// nameHeld sends the messages that wait under name n, which this browser
// holds now (a stream was opened with it): a name refused once may have
// been freed since, say while the page was closed.
export function nameHeld(n) {
  release((w) => fold(w) === fold(n), n);
}

// sentByOtherTab shows message m, which another tab sent for this
// browser, where its draft was.
export function sentByOtherTab(m) {
  if (validMsg(m)) batch(() => (insert(m) ? 1 : 0), true);
  renderOutbox();
}

// sendFromForm puts the message written in the form into the outbox and
// sends it.
export function sendFromForm() {
  const username = myName();
  const content = msgIn.value;
  if (content.trim() === '') { updateSend(); return; }
  if (username === '') {
    showError('Please enter your name first.');
    nameIn.focus();
    return;
  }
  clearError();
  typingSent();
  const it = { key: newKey(), username, content, at: Date.now(), n: outboxSeq++, error: null, by: tabId, until: Date.now() + LEASE };
  // A name the server refused: the message waits for another.
  if (username === refusedName) it.nameWait = username;
  outboxPut(it);
  msgIn.value = '';
  updateSend();
  renderOutbox();
  scrollToBottom();
  if (it.nameWait) { askForName(); return; }
  pumpOutbox();
  if (document.activeElement === sendBtn || document.activeElement === document.body) msgIn.focus();
}

// startOutbox shows the outbox and keeps it going: it is sent when the
// browser comes back online, shown and sent when other tabs change it, and
// handed to the leader when this tab goes away.
export function startOutbox() {
  // A tab that goes away gives its messages to the leader at once.
  window.addEventListener('pagehide', () => {
    for (const it of outboxItems()) {
      if (it.by === tabId) { it.until = 0; outboxPut(it); }
    }
  });
  // Other tabs change the outbox: show it, and send it if this tab leads.
  window.addEventListener('storage', (e) => {
    if (e.key !== null && !e.key.startsWith(OUTBOX)) return;
    renderOutbox();
    pumpOutbox();
  });
  window.addEventListener('online', () => {
    nextTryAt = 0;
    pumpOutbox();
  });
  renderOutbox();
}
