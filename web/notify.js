// Desktop notifications of mentions. The bell in the header asks for the
// browser's permission when pressed (never on load) and turns them on or
// off for every tab of this browser; while they are on, a message that
// mentions the person and arrives while no tab of this browser is visible
// shows a notification.
//
// One notification per message: only the tab that reads the stream
// decides. A leader asks the other tabs whether one of them is visible
// (t: 'seen?'), and notifies when none answers within ASK_WAIT. A solo
// tab (no channel to ask) notifies when it is hidden itself; the message
// id as the notification's tag lets the desktop show it once.

import { $ } from './util.js';
import { myName } from './form.js';
import { isOwn } from './own.js';
import { findMentions, fold } from './mentions.js';
import { role, tell, listen } from './tabs.js';

const PREF = 'chat.notify';        // 'on' once the person turned notifications on
const ASK_WAIT = 1000;             // ms a leader waits for a visible tab to say so
const BODY_MAX = 200;              // characters of the message in the notification

const bell = $('bell'), bellText = $('bell-text');
const supported = typeof Notification === 'function';

let prefOn = false;                // the person's choice (localStorage, or this tab's if blocked)
try { prefOn = localStorage.getItem(PREF) === 'on'; } catch (_) { /* storage blocked */ }

// enabled reports whether mentions are notified: the person asked for
// it, and the browser allows it.
const enabled = () => supported && prefOn && Notification.permission === 'granted';

// renderBell shows whether notifications are on, or blocked.
function renderBell() {
  bell.hidden = !supported;
  if (!supported) return;
  const denied = Notification.permission === 'denied';
  bell.setAttribute('aria-pressed', enabled() ? 'true' : 'false');
  if (denied) bell.setAttribute('aria-disabled', 'true'); else bell.removeAttribute('aria-disabled');
  bellText.textContent = denied ? 'Notifications blocked' : 'Notify me';
  bell.title = denied ? 'This browser blocks notifications from this chat: allow them in its site settings'
    : enabled() ? 'Desktop notifications of mentions are on: press to turn them off'
      : 'Get a desktop notification when someone mentions you while the chat is in the background';
}

// setPref records the person's choice for every tab of this browser.
function setPref(on) {
  prefOn = on;
  try { localStorage.setItem(PREF, on ? 'on' : 'off'); } catch (_) { /* this tab still knows */ }
  renderBell();
}

// bellPressed turns notifications off, or asks the browser for its
// permission (which asks the person, the first time) and turns them on
// once it is given.
async function bellPressed() {
  if (!supported) return;
  if (enabled()) { setPref(false); return; }
  if (Notification.permission === 'denied') return;
  let p;
  try { p = await Notification.requestPermission(); } catch (_) { p = Notification.permission; }
  setPref(p === 'granted');
}

// show shows the notification of m, which mentions the person.
function show(m) {
  const body = m.content.length > BODY_MAX ? m.content.slice(0, BODY_MAX - 1) + '…' : m.content;
  try {
    const n = new Notification(m.username + ' mentioned you', { body, tag: 'chat-' + m.id });
    n.addEventListener('click', () => { window.focus(); n.close(); });
  } catch (_) { /* where only a service worker may notify (Android): nothing */ }
}

const asking = new Map();          // message id -> timer, while a leader waits for a visible tab

// mentioned takes a message that came from this tab's stream as news
// (not a new stream's backlog) and notifies it if it mentions the person
// and nobody is looking.
export function mentioned(m) {
  if (!enabled() || !document.hidden) return;
  const me = myName();
  if (me === '' || fold(m.username) === fold(me) || isOwn(m.id)) return;
  if (!findMentions(m.content, me).some((f) => f.me)) return;
  if (role !== 'leader') { show(m); return; }
  if (asking.has(m.id)) return;
  asking.set(m.id, setTimeout(() => { asking.delete(m.id); show(m); }, ASK_WAIT));
  tell({ t: 'seen?', id: m.id });
}

// startNotify shows the bell and wires it; a visible tab answers the
// leader's question, and the bell follows the choice made in other tabs
// and the browser's permission.
export function startNotify() {
  renderBell();
  bell.addEventListener('click', bellPressed);
  listen((d) => {
    if (!d || typeof d.id !== 'string') return;
    if (d.t === 'seen?' && !document.hidden) tell({ t: 'seen', id: d.id });
    if (d.t === 'seen' && asking.has(d.id)) { clearTimeout(asking.get(d.id)); asking.delete(d.id); }
  });
  window.addEventListener('storage', (e) => {
    if (e.key === PREF || e.key === null) { prefOn = e.newValue === 'on'; renderBell(); }
  });
  if (supported && navigator.permissions && navigator.permissions.query) {
    navigator.permissions.query({ name: 'notifications' })
      .then((st) => st.addEventListener('change', renderBell))
      .catch(() => { /* not queryable here */ });
  }
}
