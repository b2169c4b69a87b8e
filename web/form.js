// The form: the name and message fields, the Send button, the error line
// under them, and the line that says why the server refused the name.
// The name is saved in localStorage, so every tab and a reload start with
// it.

import { $ } from './util.js';
import { tell, listen } from './tabs.js';

export const NAME_KEY = 'chat.name';

export const form = $('form');
export const nameIn = $('name');
export const msgIn = $('message');
export const sendBtn = $('send');
const errEl = $('error');
const nameErrEl = $('name-error');

// refusedName is a name the server refused (400: not a name it takes;
// 409: someone else holds it), not tried again until the person changes
// the name; refusedText says why.
export let refusedName = null;
let refusedText = '';
const refusedWatchers = [];

// nameRefusal returns what to tell the person about a name the server
// refused with status and body (its JSON answer, or null).
export function nameRefusal(status, body) {
  let why = body && typeof body.error === 'string' ? body.error.trim().replace(/[.!]+$/, '') : '';
  if (status === 409) {
    if (!why) why = 'this name is in use by someone else; please choose another';
    return why[0].toUpperCase() + why.slice(1) + '.';
  }
  return 'The server does not accept this name' + (why ? ': ' + why : '') + '. Please choose another.';
}

// isNameError reports whether a 400 answer's body is about the name (the
// server names the field first, or gives the name) rather than the content.
export const isNameError = (body) => !!body && (typeof body.name === 'string' ||
  (typeof body.error === 'string' && /^(user)?name\b/.test(body.error)));

// refuseName records that the server refused name n, saying text, and
// shows it by the name field while the field holds n. Unless told
// otherwise it tells the other tabs of this browser (they share the name
// and the identity); onRefused watchers hear of it in every tab.
export function refuseName(n, text, tellOthers = true) {
  refusedName = n;
  refusedText = text;
  if (myName() === n) showNameError(text);
  if (tellOthers) tell({ t: 'refused', name: n, text });
  for (const fn of refusedWatchers) fn(n);
}

// onRefused calls fn with each name the server refuses.
export function onRefused(fn) {
  refusedWatchers.push(fn);
}

// showNameError shows text by the name field, which it describes.
function showNameError(text) {
  nameErrEl.textContent = text;
  nameErrEl.hidden = false;
  nameIn.setAttribute('aria-invalid', 'true');
  nameIn.setAttribute('aria-describedby', 'name-error');
}

// clearNameError hides the name's error.
function clearNameError() {
  nameErrEl.textContent = '';
  nameErrEl.hidden = true;
  nameIn.removeAttribute('aria-invalid');
  nameIn.removeAttribute('aria-describedby');
}

// nameMayBeRefused checks the name in the field against the refused one:
// the same name shows the refusal again, another forgets it (a taken name
// may be free by the time the person comes back to it).
function nameMayBeRefused() {
  if (refusedName === null) return;
  if (myName() === refusedName) { showNameError(refusedText); return; }
  refusedName = null;
  clearNameError();
}

// askForName shows the refusal of the name in the field and moves the
// focus there, so the person picks another.
export function askForName() {
  nameMayBeRefused();
  nameIn.focus();
}

// myName returns the name in the field.
export const myName = () => nameIn.value.trim();

// validName reports whether the server can take n as a name.
export function validName(n) {
  return n !== '' && [...n].length <= 32 && !/[\u0000-\u001f\u007f-\u009f]/.test(n);
}

// restoreName fills the name field with the name saved in this browser.
export function restoreName() {
  try { nameIn.value = localStorage.getItem(NAME_KEY) || ''; } catch (_) { /* storage blocked */ }
}

// updateSend enables Send while there is something to send.
export function updateSend() {
  sendBtn.disabled = msgIn.value.trim() === '';
}

// showError shows text in the error line.
export function showError(text) {
  errEl.textContent = text;
  errEl.hidden = false;
}

// clearError empties the error line.
export function clearError() {
  errEl.textContent = '';
  errEl.hidden = true;
}

// startForm wires the keyboard: Enter in the name moves to the message,
// Enter in the message sends (Shift+Enter adds a line). onName runs when
// the name changes, in this tab (settled: false while typing, true once
// the field is left) or in another tab of this browser; onSubmit runs on
// Send.
export function startForm({ onName, onSubmit }) {
  nameIn.addEventListener('input', () => {
    try { localStorage.setItem(NAME_KEY, nameIn.value.trim()); } catch (_) { /* ignore */ }
    nameMayBeRefused();
    onName(false);
  });
  nameIn.addEventListener('change', () => onName(true));
  // Another tab of this browser changed the name: a tab whose own name is
  // still empty takes it too.
  window.addEventListener('storage', (e) => {
    if (e.key !== NAME_KEY) return;
    if (nameIn.value.trim() === '' && document.activeElement !== nameIn && typeof e.newValue === 'string') {
      nameIn.value = e.newValue;
      nameMayBeRefused();
    }
    onName(false);
  });
  // Another tab of this browser heard that the server refuses a name.
  listen((d) => {
    if (d && d.t === 'refused' && typeof d.name === 'string' && typeof d.text === 'string') refuseName(d.name, d.text, false);
  });
  nameIn.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.isComposing) { e.preventDefault(); msgIn.focus(); }
  });
  msgIn.addEventListener('input', updateSend);
  msgIn.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      if (!sendBtn.disabled) form.requestSubmit(sendBtn);
    }
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    onSubmit();
  });
  updateSend();
}
