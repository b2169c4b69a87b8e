// Own messages, known by the ids this browser's posts got back.
//
// A message is this person's own only if this browser sent it: anyone can
// post under any name, so the name proves nothing. Each id is kept in
// localStorage under its own key (so tabs posting at once never overwrite
// each other's), the newest OWN_MAX, so every tab and a reload know them.

import { parseId, cmpKey } from './ids.js';

const OWN_PREFIX = 'chat.own.';
const OWN_MAX = 1000;

const ownIds = new Set();
try {
  for (let i = 0; i < localStorage.length; i++) {
    const k = localStorage.key(i);
    if (k && k.startsWith(OWN_PREFIX)) ownIds.add(k.slice(OWN_PREFIX.length));
  }
} catch (_) { /* storage blocked: this tab alone knows its own */ }

// rememberOwn records id as one of this browser's messages.
export function rememberOwn(id) {
  const key = parseId(id);
  if (!key) return;
  const cid = key[0] + '-' + key[1];
  ownIds.add(cid);
  try {
    localStorage.setItem(OWN_PREFIX + cid, '1');
    if (ownIds.size > OWN_MAX) {
      const old = [...ownIds].sort((x, y) => cmpKey(parseId(x), parseId(y))).slice(0, ownIds.size - OWN_MAX);
      for (const o of old) { ownIds.delete(o); localStorage.removeItem(OWN_PREFIX + o); }
    }
  } catch (_) { /* this tab still knows */ }
}

// isOwn reports whether the message with canonical id was sent from this browser.
export const isOwn = (id) => ownIds.has(id);

// ALL_OWN is what ownChanged returns when the whole storage was cleared.
export const ALL_OWN = Symbol('all');

// ownChanged takes a storage event of another tab into account. It
// returns the canonical id whose ownership changed, ALL_OWN when the
// storage was cleared, or null when the event is not about own ids.
export function ownChanged(e) {
  if (e.key === null) { ownIds.clear(); return ALL_OWN; } // storage cleared
  if (!e.key.startsWith(OWN_PREFIX)) return null;
  const cid = e.key.slice(OWN_PREFIX.length);
  if (e.newValue === null) ownIds.delete(cid); else ownIds.add(cid);
  return cid;
}
