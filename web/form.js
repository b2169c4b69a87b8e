// The form: the name and message fields, the Send button and the error line
// under them. The name is saved in localStorage, so every tab and a reload
// start with it.

import { $ } from './util.js';

export const NAME_KEY = 'chat.name';

export const form = $('form');
export const nameIn = $('name');
export const msgIn = $('message');
export const sendBtn = $('send');
const errEl = $('error');

export let refusedName = null;     // a name the server refused (400), not tried again

// refuseName records a name the server refused.
export function refuseName(n) {
  refusedName = n;
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

// errorShown reports whether the error line shows something.
const errorShown = () => !errEl.hidden;

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
    if (myName() !== refusedName && errorShown() && refusedName !== null) clearError();
    onName(false);
  });
  nameIn.addEventListener('change', () => onName(true));
  // Another tab of this browser changed the name: a tab whose own name is
  // still empty takes it too.
  window.addEventListener('storage', (e) => {
    if (e.key !== NAME_KEY) return;
    if (nameIn.value.trim() === '' && document.activeElement !== nameIn && typeof e.newValue === 'string') {
      nameIn.value = e.newValue;
    }
    onName(false);
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
