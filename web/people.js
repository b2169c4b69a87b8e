// Who is here and who is typing, from the stream's presence and typing
// events; and telling the others while this person types (POST /typing).

import { $, retryAfterMs } from './util.js';
import { msgIn, myName, validName, refusedName, refuseName, nameRefusal, isNameError } from './form.js';
import { state, onStateChange } from './status.js';

const TYPING_EVERY = 3000;         // ms between POST /typing while the person types

const onlineEl = $('online'), typingEl = $('typing');
const peopleEl = $('people'), peopleTitle = $('people-title'), peopleList = $('people-list'), peopleMore = $('people-more');

const count = (n) => typeof n === 'number' && isFinite(n) && n >= 0 ? Math.floor(n) : null;

// validPresence reports whether p has the shape of a presence event.
export function validPresence(p) {
  return p && typeof p === 'object' && Array.isArray(p.people) && count(p.anonymous) !== null &&
    p.people.every((x) => x && typeof x.name === 'string');
}

export let presence = null;        // the last roster: {people: [{name, streams}], anonymous, people_total}

// setPresence shows the roster p.
export function setPresence(p) {
  if (!validPresence(p)) return;
  presence = p;
  renderPresence();
}

const plural = (n, one, many) => n + ' ' + (n === 1 ? one : many);

// renderPresence shows the last roster, dimmed while the page is not live.
export function renderPresence() {
  const p = presence;
  delete peopleEl.dataset.stale;
  if (!p) { peopleEl.dataset.stale = ''; return; }
  // The page's own view of the connection: a follower trusts the leader's state.
  if (state !== 'live') peopleEl.dataset.stale = '';
  const total = count(p.people_total) ?? p.people.length;
  const anon = count(p.anonymous);
  onlineEl.textContent = plural(total, 'person', 'people') + (anon > 0 ? ' · ' + anon + ' watching' : '');
  peopleTitle.textContent = 'Online — ' + total;
  const me = myName();
  const items = p.people.map((x) => {
    const li = document.createElement('li');
    const name = document.createElement('bdi');
    name.className = 'name';
    name.textContent = x.name;
    li.append(name);
    if (me !== '' && x.name === me) {
      li.className = 'me';
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = '(you)';
      li.append(you);
    }
    const n = count(x.streams);
    if (n > 1) li.title = n + ' tabs or devices';
    return li;
  });
  peopleList.replaceChildren(...items);
  const more = total - p.people.length;
  peopleMore.hidden = more <= 0;
  peopleMore.textContent = more > 0 ? 'and ' + more + ' more' : '';
}

export let typingNames = [];       // names typing now, from the last typing event

// setTyping shows who types now.
export function setTyping(names) {
  if (!Array.isArray(names)) return;
  typingNames = names.filter((n) => typeof n === 'string');
  renderTyping();
}

// typingDone takes name off the typing line: its message arrived.
export function typingDone(name) {
  if (typingNames.includes(name)) { typingNames = typingNames.filter((n) => n !== name); renderTyping(); }
}

// renderTyping shows who types, except this person.
export function renderTyping() {
  const me = myName();
  const others = typingNames.filter((n) => n !== me);
  const bdi = (n) => { const b = document.createElement('bdi'); b.textContent = n; return b; };
  if (others.length === 0) typingEl.replaceChildren();
  else if (others.length === 1) typingEl.replaceChildren(bdi(others[0]), ' is typing…');
  else if (others.length === 2) typingEl.replaceChildren(bdi(others[0]), ' and ', bdi(others[1]), ' are typing…');
  else typingEl.replaceChildren('Several people are typing…');
}

// While the person types, tell the others (at most every TYPING_EVERY).
let typingSentAt = 0, typingBlockedUntil = 0;
// sendTyping tells the others that this person types.
async function sendTyping() {
  const username = myName();
  const now = Date.now();
  if (!validName(username) || username === refusedName || msgIn.value.trim() === '') return;
  if (now - typingSentAt < TYPING_EVERY || now < typingBlockedUntil) return;
  typingSentAt = now;
  try {
    const r = await fetch('typing', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username }) });
    if (r.status === 429) typingBlockedUntil = Date.now() + (retryAfterMs(r) ?? 5000);
    if (r.status === 409 || r.status === 400) {
      // Someone else holds the name, or the server does not take it: say
      // so by the name field now, before the message is sent.
      let j = null;
      try { j = await r.json(); } catch (_) { /* no JSON */ }
      if (r.status === 409 || isNameError(j)) refuseName(username, nameRefusal(r.status, j));
    }
  } catch (_) { /* a hint only: never mind */ }
}

// typingSent notes that a message was sent: the next keystroke says
// "typing" again at once.
export function typingSent() {
  typingSentAt = 0;
}

// startPeople opens the list beside the messages on wide screens (folded
// on phones), and tells the others while this person types. Off the
// stream the list may be out of date (shown dimmed) and nobody is known to
// be typing; the next stream sends both afresh.
export function startPeople() {
  onStateChange((s) => {
    if (s !== 'live') { peopleEl.dataset.stale = ''; setTyping([]); }
  });
  msgIn.addEventListener('input', sendTyping);
  peopleEl.open = !(window.matchMedia && matchMedia('(max-width: 560px)').matches);
}
