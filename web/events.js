// Stream events applied to the page: from this tab's own stream, or
// relayed by the leader. Each event is {k, ...}: 'm' a message, 'edit' an
// edited message, 'del' a deletion, 'presence' and 'typing', 'pos' the
// stream's position before any message, 'reset' a history the server lost.

import { parseId, keyOf, cmpKey, cmpDec, validMsg } from './ids.js';
import { pos, insert, applyEdit, removeMsg, batch } from './log.js';
import { setPresence, setTyping, typingDone } from './people.js';
import { showReset } from './status.js';
import { role } from './tabs.js';

// applyEvents applies stream events, in stream order.
export function applyEvents(evs) {
  batch(() => {
    let added = 0;
    for (const ev of evs) {
      if (!ev) continue;
      if (ev.k === 'm' && validMsg(ev.m)) {
        if (insert(ev.m)) added++;
        pos.cursor = ev.m.id;
        typingDone(ev.m.username);
      } else if (ev.k === 'edit' && validMsg(ev.m)) {
        applyEdit(ev.m);
        if (parseId(ev.id)) pos.cursor = ev.id;
      } else if (ev.k === 'del') {
        removeMsg(ev.target);
        if (parseId(ev.id)) pos.cursor = ev.id;
      } else if (ev.k === 'presence') {
        setPresence(ev.p);
      } else if (ev.k === 'typing') {
        setTyping(ev.names);
      } else if (ev.k === 'pos') {       // the stream's position, before any message
        const p = keyOf(ev.id), c = parseId(pos.cursor);
        if (p) {
          // A leader's new stream (not resumed) starts later than our
          // position: the messages in between are not coming from it.
          if (ev.fresh && c && role === 'follower' && cmpKey(c, p) < 0) {
            if (c[0] === p[0]) fillGap(pos.cursor, ev.id); else showReset({ reason: 'gap' });
          }
          if (pos.cursor === null || ev.fresh) pos.since = ev.id;   // a new stream: it covers what follows
          pos.cursor = ev.id;
        }
      } else if (ev.k === 'reset') {
        pos.cursor = pos.since = keyOf(ev.id) ? ev.id : null;
        showReset(ev.info);
      }
    }
    return added;
  });
}

// fillGap fetches from GET /history the messages after `after` that a new
// leader could not relay (it holds only those after `upto`), and shows
// the missing-history notice when the server cannot serve them all.
export async function fillGap(after, upto) {
  const a = parseId(after), u = parseId(upto);
  let from = after, whole = false;
  for (let page = 0; page < 25; page++) {
    let j = null;
    try {
      const r = await fetch('history?after=' + encodeURIComponent(from) + '&limit=200', { cache: 'no-store' });
      if (r.ok) j = await r.json();
    } catch (_) { /* shown below */ }
    const msgs = j && Array.isArray(j.messages) ? j.messages.filter(validMsg) : null;
    if (!msgs || !msgs.length) break;
    if (page === 0) {
      // History begins after our position when it kept less: the
      // first message must be the very next one.
      const k = parseId(msgs[0].id);
      whole = k[0] === a[0] && BigInt(k[1]) === BigInt(a[1]) + 1n;
    }
    batch(() => { let n = 0; for (const m of msgs) if (insert(m)) n++; return n; });
    const last = parseId(msgs[msgs.length - 1].id);
    if (last[0] !== u[0] || cmpDec(last[1], u[1]) >= 0 || !j.more) {
      if (whole) return;
      break;
    }
    from = msgs[msgs.length - 1].id;
  }
  showReset({ reason: 'gap' });
}
