// An incremental text/event-stream parser (WHATWG HTML "event stream
// interpretation").

// sseParser returns a function that takes the stream's text in chunks of
// any size. It calls onEvent(type, data, id) for each event (type '' and
// data null for an event with an id only: a position, nothing to show),
// onComment() for each comment line (the heartbeat), and onRetry(ms) for
// each valid retry field.
export function sseParser(onEvent, onComment, onRetry) {
  let buf = '', data = [], type = '', idBuf = null, sawId = false;
  const line = (l) => {
    if (l === '') {
      if (data.length) onEvent(type || 'message', data.join('\n'), idBuf);
      else if (sawId) onEvent('', null, idBuf);   // id only: a position, nothing to show
      data = []; type = ''; sawId = false;
      return;
    }
    if (l[0] === ':') { onComment(); return; }
    const i = l.indexOf(':');
    const field = i < 0 ? l : l.slice(0, i);
    let value = i < 0 ? '' : l.slice(i + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') type = value;
    else if (field === 'id') { if (!value.includes('\0')) { idBuf = value; sawId = true; } }
    else if (field === 'retry') { if (/^\d+$/.test(value)) onRetry(Number(value)); }
  };
  return (chunk) => {
    buf += chunk;
    let start = 0;
    for (;;) {
      let j = start;
      while (j < buf.length && buf[j] !== '\n' && buf[j] !== '\r') j++;
      if (j >= buf.length) break;
      if (buf[j] === '\r' && j + 1 >= buf.length) break;  // "\r\n" may be split: wait
      line(buf.slice(start, j));
      start = j + (buf[j] === '\r' && buf[j + 1] === '\n' ? 2 : 1);
    }
    buf = buf.slice(start);
  };
}
