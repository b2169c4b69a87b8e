// Private rooms and moderation: the room-key gate, and the moderator's
// login and logout (GET /session, POST /login, POST /logout).

import { $, retryAfterMs, secs } from './util.js';
import { msgIn, clearError } from './form.js';
import { onStateChange } from './status.js';
import { connect } from './connection.js';
import { streams, tell } from './tabs.js';

const appEl = document.querySelector('.app');
const gateEl = $('gate'), keyIn = $('key'), gateErr = $('gate-error'), gateCancel = $('gate-cancel');
const modBtn = $('modlogin'), logoutBtn = $('logout');

let gateMode = null;               // null | 'room' (the key is needed) | 'admin' (a moderator logs in)
let session = { private: false, moderation: false, role: 'member' };

// showGate asks for the room key (mode 'room', the room is hidden until
// it is given) or the admin key (mode 'admin').
function showGate(mode) {
  if (gateMode === 'room' && mode === 'admin') return;
  gateMode = mode;
  const room = mode === 'room';
  $('gate-title').textContent = room ? 'This room is private' : 'Moderator login';
  $('gate-hint').textContent = room ? 'Enter the room key to join.' : 'Enter the admin key to delete messages.';
  $('key-label').textContent = room ? 'Room key' : 'Admin key';
  gateCancel.hidden = room;
  appEl.classList.toggle('locked', room);
  gateEl.hidden = false;
  keyIn.focus();
}

// hideGate closes the gate and shows the room.
function hideGate() {
  gateMode = null;
  gateEl.hidden = true;
  gateErr.hidden = true;
  appEl.classList.remove('locked');
}

// applySession shows what the session j allows: the moderator's buttons,
// the Delete buttons, the gate of a private room.
function applySession(j) {
  if (!j || typeof j !== 'object') return;
  session = j;
  if (j.role === 'admin') document.documentElement.dataset.admin = ''; else delete document.documentElement.dataset.admin;
  modBtn.hidden = !j.moderation || j.role === 'admin';
  logoutBtn.hidden = j.role === 'none' || (!j.private && j.role !== 'admin');
  if (j.private && j.role === 'none') showGate('room');
}

// loadSession asks the server who this browser is, and shows what follows:
// the gate of a private room, the moderator's buttons.
export async function loadSession() {
  try {
    const r = await fetch('session', { cache: 'no-store' });
    if (r.ok) applySession(await r.json());
  } catch (_) { /* the stream's answer tells us soon enough */ }
}

// roomKeyNeeded shows the room-key gate: the server refused a post without it.
export const roomKeyNeeded = () => showGate('room');

// login sends the key in the gate; once it is right, the room (or the
// moderator's page) shows, and the other tabs hear of it.
async function login(e) {
  e.preventDefault();
  const key = keyIn.value;
  if (key.trim() === '') { keyIn.focus(); return; }
  gateErr.hidden = true;
  let res;
  try {
    res = await fetch('login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ key }) });
  } catch (_) {
    gateErr.textContent = 'Could not reach the server. Please try again.';
    gateErr.hidden = false;
    return;
  }
  if (res.status === 204) {
    keyIn.value = '';
    const wasRoom = gateMode === 'room';
    hideGate();
    clearError();
    await loadSession();
    tell({ t: 'login' });
    if (wasRoom && streams()) connect();
    msgIn.focus();
    return;
  }
  const ra = retryAfterMs(res);
  gateErr.textContent = res.status === 401 ? 'Wrong key. Please try again.'
    : res.status === 429 ? 'Too many wrong keys. Please wait ' + secs(ra != null ? ra : 60000) + ' s and try again.'
      : 'Login failed (HTTP ' + res.status + '). Please try again.';
  gateErr.hidden = false;
  keyIn.select();
}

// logout ends the session in every tab of this browser.
async function logout() {
  try { await fetch('logout', { method: 'POST' }); } catch (_) { /* try the session anyway */ }
  await loadSession();
  tell({ t: 'login' });
  if (session.private && streams()) connect();
}

// adminNeeded asks for the admin key again: the server refused a
// moderator's deletion (the session ended, or the key changed).
export async function adminNeeded() {
  await loadSession();
  showGate('admin');
}

// startGate wires the gate and the moderator's buttons; a stream refused
// for want of the key shows the gate, and the gate goes once the stream is
// let in.
export function startGate() {
  gateEl.addEventListener('submit', login);
  gateCancel.addEventListener('click', hideGate);
  modBtn.addEventListener('click', () => showGate('admin'));
  logoutBtn.addEventListener('click', logout);
  onStateChange((s) => {
    if (s === 'locked') showGate('room'); else if (gateMode === 'room') hideGate();
  });
}
