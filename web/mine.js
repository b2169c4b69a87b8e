// The Edit and Delete controls of a message: the person's own messages
// may be edited in place (Enter saves with PATCH /messages/{id}, Escape
// cancels) and deleted (DELETE /messages/{id}) once the person confirms in
// a dialog; a moderator may delete any message. The page knows its own
// messages by id (own.js); the server knows them by the identity cookie,
// and says why when it refuses. What goes wrong shows under the message.

import { $ } from './util.js';
import { parseId, validMsg } from './ids.js';
import { byId, batch, removeMsg, applyEdit } from './log.js';
import { isOwn } from './own.js';
import { adminNeeded, roomKeyNeeded } from './gate.js';

const QUOTE_MAX = 140;             // characters of the message the confirmation quotes

const logEl = $('log');
const dlg = $('confirm'), dlgQuote = $('confirm-quote');
let editors = 0;                   // numbers the hints of the editors

// recOf returns the record of the message that holds element target, or null.
function recOf(target) {
  const el = target instanceof Element ? target.closest('.msg') : null;
  const k = el ? parseId(el.dataset.id) : null;
  return k ? byId.get(k[0] + '-' + k[1]) || null : null;
}

// showMsgError shows text under the message of rec.
function showMsgError(rec, text) {
  const p = rec.el.querySelector('.msg-error');
  p.textContent = text;
  p.hidden = false;
}

// clearMsgError hides the error under the message of rec.
function clearMsgError(rec) {
  const p = rec.el.querySelector('.msg-error');
  p.textContent = '';
  p.hidden = true;
}

// reason returns the server's reason in a JSON answer body, or the status.
function reason(res, body) {
  const why = body && typeof body.error === 'string' ? body.error.trim().replace(/[.!]+$/, '') : '';
  return why || 'HTTP ' + res.status;
}

// readBody returns the JSON body of res, or null.
async function readBody(res) {
  try { return await res.json(); } catch (_) { return null; }
}

// confirmDelete asks whether to delete the message of rec, in a modal
// dialog (Cancel has the focus; Escape cancels), and resolves to the
// answer.
function confirmDelete(rec) {
  if (typeof dlg.showModal !== 'function') return Promise.resolve(window.confirm('Delete this message for everyone?'));
  const c = rec.content;
  dlgQuote.textContent = c.length > QUOTE_MAX ? c.slice(0, QUOTE_MAX - 1) + '…' : c;
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'delete'), { once: true });
    dlg.showModal();
  });
}

// deletePressed deletes the message of rec once the person confirms; the
// focus goes back to the button, or to the log when the message is gone.
async function deletePressed(rec, btn) {
  clearMsgError(rec);
  if (!(await confirmDelete(rec))) { btn.focus(); return; }
  let res;
  try {
    res = await fetch('messages/' + encodeURIComponent(rec.id), { method: 'DELETE' });
  } catch (_) {
    showMsgError(rec, 'Not deleted: the server could not be reached.');
    btn.focus();
    return;
  }
  if (res.ok || res.status === 404) {             // gone now, or already: the event follows
    batch(() => { removeMsg(rec.id); return 0; });
    logEl.focus({ preventScroll: true });
    return;
  }
  const body = await readBody(res);
  if (res.status === 401 && !isOwn(rec.id)) adminNeeded();
  else if (res.status === 401) roomKeyNeeded();
  else if (res.status === 403 && !isOwn(rec.id)) adminNeeded();
  showMsgError(rec, 'Not deleted: ' + reason(res, body) + '.');
  btn.focus();
}

// startEdit puts an editor in place of the content of rec's message, with
// the content to change.
function startEdit(rec) {
  const open = rec.el.querySelector('.editor textarea');
  if (open) { open.focus(); return; }
  clearMsgError(rec);
  const content = rec.el.querySelector('.content');
  const ed = document.createElement('div');
  ed.className = 'editor';
  const box = document.createElement('textarea');
  box.value = rec.content;
  box.rows = 1;
  box.dir = 'auto';
  box.setAttribute('aria-label', 'Edit your message');
  const hint = document.createElement('p');
  hint.className = 'hint';
  hint.id = 'edit-hint-' + ++editors;
  hint.textContent = 'Enter saves · Escape cancels · Shift+Enter adds a new line';
  box.setAttribute('aria-describedby', hint.id);
  const save = document.createElement('button');
  save.type = 'button'; save.className = 'save'; save.textContent = 'Save';
  const cancel = document.createElement('button');
  cancel.type = 'button'; cancel.className = 'cancel'; cancel.textContent = 'Cancel';
  const row = document.createElement('div');
  row.className = 'edit-actions';
  row.append(save, cancel, hint);
  ed.append(box, row);
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) { e.preventDefault(); saveEdit(rec, box); }
    if (e.key === 'Escape' && !e.isComposing) { e.preventDefault(); endEdit(rec); }
  });
  save.addEventListener('click', () => saveEdit(rec, box));
  cancel.addEventListener('click', () => endEdit(rec));
  content.hidden = true;
  rec.el.classList.add('editing');
  content.after(ed);
  box.focus();
  box.setSelectionRange(box.value.length, box.value.length);
}

// endEdit takes the editor of rec's message away, and gives the focus
// back to its Edit button.
function endEdit(rec) {
  const ed = rec.el.querySelector('.editor');
  if (ed) ed.remove();
  rec.el.querySelector('.content').hidden = false;
  rec.el.classList.remove('editing');
  clearMsgError(rec);
  if (rec.el.isConnected) rec.el.querySelector('.edit').focus();
}

// saveEdit sends the content of box as the new content of rec's message
// (PATCH /messages/{id}) and shows the edited message; a refusal stays
// in the editor with the server's reason.
async function saveEdit(rec, box) {
  if (box.readOnly) return;                        // saving already
  const content = box.value;
  if (content.trim() === '') { showMsgError(rec, 'A message cannot be empty: delete it instead.'); return; }
  if (content === rec.content) { endEdit(rec); return; }
  box.readOnly = true;
  clearMsgError(rec);
  let res;
  try {
    res = await fetch('messages/' + encodeURIComponent(rec.id), {
      method: 'PATCH', cache: 'no-store', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ content }),
    });
  } catch (_) {
    box.readOnly = false;
    showMsgError(rec, 'Not saved: the server could not be reached.');
    return;
  }
  const body = await readBody(res);
  if (res.ok && validMsg(body)) {
    endEdit(rec);
    applyEdit(body);
    return;
  }
  box.readOnly = false;
  if (res.status === 401) roomKeyNeeded();
  showMsgError(rec, 'Not saved: ' + reason(res, body) + '.');
  box.focus();
}

// startMine wires the Edit and Delete buttons of every message.
export function startMine() {
  logEl.addEventListener('click', (e) => {
    const btn = e.target instanceof Element ? e.target.closest('.acts button') : null;
    const rec = btn ? recOf(btn) : null;
    if (!rec) return;
    if (btn.classList.contains('edit') && isOwn(rec.id)) startEdit(rec);
    if (btn.classList.contains('del')) deletePressed(rec, btn);
  });
}
