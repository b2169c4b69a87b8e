// Message ids: "<epoch>-<seq>", and the order of the epochs this tab knows.
//
// Within an epoch, ids are ordered by seq. Epochs are ordered by arrival,
// not by number: an epoch is the millisecond a server's history began, and
// a clock stepped back or an old journal restored makes a later history
// carry a smaller one, whose messages must still come after the old ones.

const ID_RE = /^(\d{1,30})-(\d{1,30})$/;
const trimZeros = (d) => d.replace(/^0+(?=\d)/, '');

// parseId returns [epoch, seq] of id without leading zeros, or null if id
// is malformed.
export function parseId(s) {
  const m = typeof s === 'string' ? ID_RE.exec(s) : null;
  return m ? [trimZeros(m[1]), trimZeros(m[2])] : null;
}

// cmpDec compares non-negative decimal strings without leading zeros exactly.
export const cmpDec = (a, b) => (a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0);

export const epochs = [];          // the epochs this tab knows, oldest first (by arrival)
const epochRank = new Map();       // epoch -> its index in epochs

// knowsEpoch reports whether this tab has seen epoch e.
export const knowsEpoch = (e) => epochRank.has(e);

// learnEpoch adds epoch e, unknown so far, just before the known epoch
// `before`, or last.
function learnEpoch(e, before) {
  if (epochRank.has(e)) return;
  epochs.splice(epochRank.has(before) ? epochRank.get(before) : epochs.length, 0, e);
  epochs.forEach((x, i) => epochRank.set(x, i));
}

// mergeEpochs takes the epochs another tab knows, in its order, keeping
// ours as they are.
export function mergeEpochs(theirs) {
  if (!Array.isArray(theirs)) return;
  for (let i = theirs.length - 1; i >= 0; i--) {
    if (typeof theirs[i] === 'string' && /^\d{1,30}$/.test(theirs[i])) learnEpoch(trimZeros(theirs[i]), theirs[i + 1]);
  }
}

// keyOf returns the sort key of id, learning its epoch; null if id is
// malformed.
export function keyOf(id) {
  const k = parseId(id);
  if (k) learnEpoch(k[0]);
  return k;
}

// cmpKey compares two keys whose epochs are known.
export const cmpKey = (a, b) => (epochRank.get(a[0]) - epochRank.get(b[0])) || cmpDec(a[1], b[1]);

// validMsg reports whether m has the shape of a message.
export function validMsg(m) {
  return m && typeof m === 'object' && parseId(m.id) !== null && typeof m.username === 'string' &&
    typeof m.content === 'string' && typeof m.time === 'string';
}

// plain returns the message fields of m, and nothing else: the time of
// its last edit only if it was edited.
export function plain(m) {
  const p = { id: m.id, username: m.username, content: m.content, time: m.time };
  if (typeof m.edited === 'string') p.edited = m.edited;
  return p;
}
