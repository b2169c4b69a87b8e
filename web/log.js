// The message list: sorted by id, de-duplicated by id, scrolled sensibly,
// with earlier messages loaded on demand (GET /history), edited ones shown
// as edited, deleted ones taken away, and mentions highlighted.

import { $ } from './util.js';
import { parseId, keyOf, cmpKey, knowsEpoch, validMsg, plain } from './ids.js';
import { isOwn, ownChanged, ALL_OWN } from './own.js';
import { myName } from './form.js';
import { showContent } from './mentions.js';

const MAX_MSGS = 2000;             // messages kept on the page
const PAGE = 50;                   // messages per GET /history page

const logEl = $('log'), emptyEl = $('empty'), jumpBtn = $('jump');
const logTop = $('log-top'), earlierBtn = $('earlier'), startEl = $('start'), outboxEl = $('outbox');

export const list = [];            // records {key, id, username, content, time, edited, el}
export const byId = new Map();     // canonical id -> record

// pos is this tab's place in the stream.
export const pos = {
  // cursor is the id of the last stream event seen (message or reset position).
  cursor: null,
  // since: this tab holds every message after it (a position, or null
  // when it holds nothing yet): a follower whose position is older than
  // its new leader's `since` would otherwise skip the messages in between.
  since: null,
};

// unread holds the canonical ids of the messages that arrived while the
// tab was hidden, for its title: a message that turns out to be the
// person's own (its post's answer came after the stream's copy) or is
// deleted is not counted.
const unread = new Set();
let stuck = true;                  // the reader is at the bottom of the log
let reachedStart = false, loadingEarlier = false;
const deletedIds = new Set();      // canonical ids deleted, so that a late copy is not shown again

// fmtTime shows the time of day of a message of today, and the date too
// of an older one.
function fmtTime(d) {
  const now = new Date();
  const sameDay = d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

// fill shows the record's message in its element: its name, its content
// with mentions highlighted, its time, and whether it was edited, is the
// person's own, or mentions the person.
export function fill(rec) {
  const el = rec.el;
  el.dataset.id = rec.id;
  el.querySelector('.name').textContent = rec.username;
  const own = isOwn(rec.id);
  const mentioned = showContent(el.querySelector('.content'), rec.content, myName()) && !own;
  setTime(el.querySelector('.time'), rec.time, fmtTime, '');
  const ed = el.querySelector('.edited');
  ed.hidden = !setTime(ed, rec.edited, () => '(edited)', 'Edited ');
  el.classList.toggle('own', own);
  if (own && unread.delete(rec.id)) updateTitle();
  el.classList.toggle('mentioned', mentioned);
  el.querySelector('.at-you').hidden = !mentioned;
}

// setTime shows the time iso in the <time> element t, as text(date), with
// the full date and time on hover after prefix; it reports whether iso is
// a time.
function setTime(t, iso, text, prefix) {
  const d = typeof iso === 'string' ? new Date(iso) : null;
  if (!d || isNaN(d.getTime())) {
    t.textContent = ''; t.removeAttribute('datetime'); t.title = '';
    return false;
  }
  t.dateTime = iso; t.textContent = text(d); t.title = prefix + d.toLocaleString();
  return true;
}

// make returns a new element of tag with the class cls, and text if given.
function make(tag, cls, text) {
  const e = document.createElement(tag);
  e.className = cls;
  if (text) e.textContent = text;
  return e;
}

// button returns a button with the class and text.
function button(cls, text) {
  const b = make('button', cls, text);
  b.type = 'button';
  return b;
}

// makeEl returns an empty message element: its meta line (name, "(you)",
// time, "(edited)", "mentions you", and the Edit and Delete controls),
// its content, and a line for errors of its controls.
function makeEl() {
  const el = make('article', 'msg');
  const meta = make('div', 'meta');
  const acts = make('span', 'acts');
  acts.append(button('edit', 'Edit'), button('del', 'Delete'));
  meta.append(make('bdi', 'name'), ' ', make('span', 'you', '(you)'), ' ', make('time', 'time'), ' ',
    make('time', 'edited'), ' ', make('span', 'at-you', 'mentions you'), acts);
  const body = make('div', 'content');
  body.dir = 'auto';
  const err = make('p', 'msg-error error');
  err.setAttribute('role', 'alert');
  err.hidden = true;
  el.append(meta, body, err);
  return el;
}

// insert puts m in id order. It returns true when something new became
// visible. An older message (from scrollback) is not counted as unread.
export function insert(m, older) {
  if (!validMsg(m)) return false;
  const key = keyOf(m.id);
  const id = key[0] + '-' + key[1];
  if (deletedIds.has(id)) return false;
  const old = byId.get(id);
  if (old) {
    update(old, m);
    return false;
  }
  const rec = { key, id, username: m.username, content: m.content, time: m.time, edited: edited(m), el: makeEl() };
  fill(rec);
  let i = list.length;
  if (i > 0 && cmpKey(list[i - 1].key, key) > 0) {
    let lo = 0, hi = list.length;       // first index whose key is greater
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmpKey(list[mid].key, key) > 0) hi = mid; else lo = mid + 1;
    }
    i = lo;
  }
  logEl.insertBefore(rec.el, i === list.length ? outboxEl : list[i].el);
  list.splice(i, 0, rec);
  byId.set(id, rec);
  // Forget the oldest only while the reader follows the newest: someone
  // scrolled back keeps everything they loaded.
  while (list.length > MAX_MSGS && !older && stuck) {
    const gone = list.shift();
    gone.el.remove();
    byId.delete(gone.id);
    reachedStart = false;
    const s = parseId(pos.since);
    if (!s || cmpKey(gone.key, s) > 0) pos.since = gone.id;
  }
  if (!older && document.hidden && !isOwn(rec.id)) unread.add(id);
  return true;
}

// edited returns the time m was last edited, or undefined.
const edited = (m) => (typeof m.edited === 'string' ? m.edited : undefined);

// update shows m, a copy of the message of rec that came again: edited
// since (an edit event, or history that holds the edit), or another
// message under the same id (the server lost its tail and reused the id).
// An older copy of the same message (unedited, or edited earlier) changes
// nothing.
function update(rec, m) {
  const e = edited(m);
  if (rec.username === m.username && rec.content === m.content && rec.time === m.time && rec.edited === e) return;
  const same = rec.username === m.username && rec.time === m.time;
  if (same && rec.edited !== undefined && (e === undefined || Date.parse(e) < Date.parse(rec.edited))) return;
  rec.username = m.username; rec.content = m.content; rec.time = m.time; rec.edited = e;
  fill(rec);
}

// applyEdit shows the edited message m in place of the one it edits, if
// it is shown; it reports whether it was.
export function applyEdit(m) {
  if (!validMsg(m)) return false;
  const k = parseId(m.id);
  const rec = byId.get(k[0] + '-' + k[1]);
  if (!rec) return false;
  update(rec, m);
  return true;
}

// refill shows every message again: the person's name changed, and with
// it which mentions are of them.
export function refill() {
  for (const r of list) fill(r);
}

// removeMsg takes away the message with id target, and keeps it away.
export function removeMsg(target) {
  const k = parseId(target);
  if (!k) return;
  const id = k[0] + '-' + k[1];
  deletedIds.add(id);
  unread.delete(id);
  const rec = byId.get(id);
  if (!rec) return;
  rec.el.remove();
  byId.delete(id);
  const i = list.indexOf(rec);
  if (i >= 0) list.splice(i, 1);
}

// msgsAfter returns the messages after the position `after` (all of them
// when this tab does not know its epoch).
export function msgsAfter(after) {
  const k = parseId(after);
  const all = !k || !knowsEpoch(k[0]);
  const out = [];
  for (const r of list) if (all || cmpKey(r.key, k) > 0) out.push(plain(r));
  return out;
}

// updateEmpty shows the "no messages yet" line when there is nothing to show.
export function updateEmpty() {
  emptyEl.hidden = list.length > 0 || outboxEl.childElementCount > 0;
  updateTop();
}

// ---------- scrollback: GET /history before the oldest message shown ----------

// updateTop shows the "Load earlier" button, or the start of the
// conversation once it is reached.
function updateTop() {
  // Sequence number 1 is the first message of its history: nothing is before it.
  if (list.length > 0 && list[0].key[1] === '1') reachedStart = true;
  logTop.hidden = list.length === 0;
  earlierBtn.hidden = reachedStart;
  startEl.hidden = !reachedStart;
  earlierBtn.disabled = loadingEarlier;
  earlierBtn.textContent = loadingEarlier ? 'Loading…' : 'Load earlier messages';
}

// loadEarlier shows the page of history before the oldest message shown.
async function loadEarlier() {
  if (loadingEarlier || reachedStart || list.length === 0) return;
  loadingEarlier = true;
  updateTop();
  const first = list[0];
  try {
    const r = await fetch('history?before=' + encodeURIComponent(first.id) + '&limit=' + PAGE, { cache: 'no-store' });
    if (r.status === 404) { reachedStart = true; return; }   // from an earlier run of the server: nothing before it here
    if (!r.ok) return;                                         // try again on the next scroll
    const j = await r.json();
    if (!j || !Array.isArray(j.messages)) return;
    // Keep what the reader looks at where it is while messages appear above it.
    const anchor = first.el.isConnected ? first.el : null;
    const top = anchor ? anchor.getBoundingClientRect().top : 0;
    for (const m of j.messages) insert(m, true);
    if (anchor) logEl.scrollTop += anchor.getBoundingClientRect().top - top;
    if (j.more === false) reachedStart = true;
  } catch (_) {
    /* offline: try again on the next scroll */
  } finally {
    loadingEarlier = false;
    updateEmpty();
  }
  // Still at the top (short pages, a tall window): keep going.
  if (!reachedStart && logEl.scrollTop < logEl.clientHeight / 2) setTimeout(loadEarlier, 0);
}

// ---------- scrolling and the unread count ----------

// atBottom reports whether the reader is at (or near) the newest message.
export function atBottom() {
  return logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight <= 48;
}

// scrollToBottom shows the newest message.
export function scrollToBottom() {
  logEl.scrollTop = logEl.scrollHeight;
  jumpBtn.hidden = true;
  stuck = true;
}

// updateTitle counts unread messages in the tab's title.
function updateTitle() {
  document.title = unread.size > 0 ? '(' + unread.size + ') Chat' : 'Chat';
}

// batch runs fn (which returns how many messages it added) keeping the
// scroll position sensible: a reader at the bottom stays there, one
// scrolled back gets the "New messages" button.
export function batch(fn, forceScroll) {
  const stick = atBottom();
  const added = fn();
  updateEmpty();
  if (added > 0 || forceScroll) {
    if (stick || forceScroll) scrollToBottom(); else jumpBtn.hidden = false;
  }
  updateTitle();
}

// startLog wires scrolling, scrollback, the unread count in the title,
// and own messages marked by other tabs.
export function startLog() {
  logEl.addEventListener('scroll', () => {
    stuck = atBottom();
    if (stuck) jumpBtn.hidden = true;
    if (logEl.scrollTop < 200 && logEl.scrollHeight > logEl.clientHeight) loadEarlier();
  }, { passive: true });
  earlierBtn.addEventListener('click', loadEarlier);
  jumpBtn.addEventListener('click', () => { scrollToBottom(); logEl.focus({ preventScroll: true }); });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) { unread.clear(); updateTitle(); }
  });
  window.addEventListener('resize', () => { if (stuck) scrollToBottom(); });
  window.addEventListener('storage', (e) => {
    const cid = ownChanged(e);
    if (cid === ALL_OWN) { refill(); return; }
    const rec = cid === null ? null : byId.get(cid);
    if (rec) fill(rec);
  });
}
