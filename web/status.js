// The connection's state in the header ("Live", "Reconnecting…", ...) and
// the notice that says messages may be missing.

import { $ } from './util.js';
import { msgIn } from './form.js';
import { role, tell } from './tabs.js';

const statusEl = $('status'), statusText = $('status-text');
const noticeEl = $('notice'), noticeText = $('notice-text');

const STATE_TEXT = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', full: 'Server full, retrying…', locked: 'Room key needed' };

export let state = 'connecting';
const watchers = [];

// onStateChange calls fn with the new state each time it changes.
export function onStateChange(fn) {
  watchers.push(fn);
}

// setState shows state s; a leader tells its followers, which show the same.
export function setState(s) {
  if (!STATE_TEXT[s]) return;
  if (s !== state) {
    state = s;
    statusEl.dataset.state = s;
    statusText.textContent = STATE_TEXT[s];
    for (const fn of watchers) fn(s);
  }
  if (role === 'leader') tell({ t: 'state', s });
}

// showReset says that some messages may be missing, and why.
export function showReset(info) {
  let text = 'The server lost part of the chat history (it probably restarted), so some messages may be missing.';
  if (info && info.reason === 'expired') text = 'You were away longer than the server keeps history, so some messages may be missing.';
  if (info && info.reason === 'gap') text = 'This tab was inactive while the chat went on, and the server no longer has all of it, so some messages may be missing.';
  noticeText.textContent = text;
  noticeEl.hidden = false;
}

// startStatus wires the notice's Dismiss button.
export function startStatus() {
  $('notice-close').addEventListener('click', () => { noticeEl.hidden = true; msgIn.focus(); });
}
