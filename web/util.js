// Small helpers every part of the page uses.

// $ returns the element with the given id.
export const $ = (id) => document.getElementById(id);

// retryAfterMs returns the wait a response's Retry-After asks for, in
// milliseconds (seconds or an HTTP date), or null without one.
export function retryAfterMs(res) {
  const v = res.headers.get('Retry-After');
  if (!v) return null;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return isNaN(t) ? null : Math.max(0, t - Date.now());
}

// secs rounds a wait in milliseconds up to whole seconds, at least one.
export const secs = (ms) => Math.max(1, Math.ceil(ms / 1000));
