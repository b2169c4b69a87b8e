// Mentions: "@name" in a message, highlighted; a mention of the person's
// own name most of all.
//
// A name may hold spaces and any script, so a mention is "@" followed by
// the person's own name, ending where a word ends; else "@" followed by a
// run of
// letters, marks, digits, "_", ".", "-" or "'" that ends in a letter,
// mark, digit or "_". The "@" must not follow a letter or digit, so
// that "ada@example.com" mentions nobody. Names compare as the server
// compares them, nearly: case-folded, with full-width forms folded
// (NFKC), so "@ADA" and "@ＡＤＡ" mention ada.

const WORD = /[\p{L}\p{M}\p{N}_]/u;
const RUN = /^[\p{L}\p{M}\p{N}_.'-]*[\p{L}\p{M}\p{N}_]/u;

// fold returns the form in which two names compare.
export const fold = (s) => s.normalize('NFKC').toLowerCase();

// isWord reports whether the character at i of s continues a word.
const isWord = (s, i) => i >= 0 && i < s.length && WORD.test(String.fromCodePoint(s.codePointAt(i)));

// prevStart returns where the character before index i of s starts (a
// character outside the BMP takes two).
const prevStart = (s, i) => (i >= 2 && /[\uDC00-\uDFFF]/.test(s[i - 1]) && /[\uD800-\uDBFF]/.test(s[i - 2]) ? i - 2 : i - 1);

// findMentions returns the mentions in text, in order, as {start, end,
// me} (me: of the name me, which may be empty).
export function findMentions(text, me) {
  const fme = me ? fold(me) : '';
  const out = [];
  for (let i = text.indexOf('@'); i >= 0; i = text.indexOf('@', i + 1)) {
    // A letter just before: part of a word (an address), not a mention.
    if (isWord(text, prevStart(text, i))) continue;
    let end = i + 1 + me.length, mine = true;
    if (fme === '' || fold(text.slice(i + 1, end)) !== fme || isWord(text, end)) {
      const m = RUN.exec(text.slice(i + 1));
      if (!m) continue;
      end = i + 1 + m[0].length;
      mine = fme !== '' && fold(m[0]) === fme;
    }
    out.push({ start: i, end, me: mine });
    i = end - 1;
  }
  return out;
}

// showContent sets el's text to text with its mentions highlighted (a
// mention of me in a <mark>); it reports whether text mentions me. Only
// text nodes are made from the text: nothing in it is markup.
export function showContent(el, text, me) {
  const found = findMentions(text, me);
  if (found.length === 0) { el.textContent = text; return false; }
  const parts = [];
  let at = 0;
  for (const f of found) {
    if (f.start > at) parts.push(text.slice(at, f.start));
    const span = document.createElement(f.me ? 'mark' : 'span');
    span.className = f.me ? 'mention me' : 'mention';
    span.textContent = text.slice(f.start, f.end);
    parts.push(span);
    at = f.end;
  }
  if (at < text.length) parts.push(text.slice(at));
  el.replaceChildren(...parts);
  return found.some((f) => f.me);
}
