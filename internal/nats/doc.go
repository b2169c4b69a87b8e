// Package nats is a client of the NATS client protocol (the text protocol
// over TCP, or TLS), written from its public specification with the
// standard library only. It knows subjects and messages, not what the chat
// room puts in them.
//
// What it implements:
//
//   - INFO, and CONNECT with verbose and pedantic off, headers and
//     no_responders on, a client name, and the user and password
//     (nats://user:pass@host:4222) or token (nats://token@host:4222) of
//     the URL; TLS for tls:// URLs and for servers whose INFO requires it.
//   - PING and PONG both ways: the server's PINGs are answered, and the
//     client PINGs the server every Options.PingInterval and drops a
//     connection whose PONGs stop.
//   - SUB and UNSUB; PUB and HPUB; MSG and HMSG, with header blocks
//     ("NATS/1.0", an optional status code and description, then
//     "Key: Value" lines); +OK; -ERR (refused credentials at connect are
//     ErrAuthorization; later errors other than an invalid subject, a
//     permissions violation or too many subscriptions drop the connection,
//     as the server closes it).
//   - Request and reply through one wildcard inbox subscription and a map
//     from reply token to the waiting caller.
//   - Reconnecting: a lost connection is retried on the servers of the
//     list in turn, forever, with a pause that grows to two seconds; the
//     subscriptions are made again and the requests that were waiting
//     fail with ErrNoReply. Status and StatusChanged let callers show the
//     state.
//
// How it fails: a publish or request while disconnected fails at once
// with ErrNotConnected (the message was not sent); a request whose reply
// does not come fails with ErrNoReply (it was sent: its fate is unknown);
// a request nobody listens to fails with ErrNoResponders. Credentials of a
// URL never appear in an error: URLs are named with their userinfo
// replaced by "xxxxx".
//
// What it leaves out: queue groups, auto-unsubscribe after N messages,
// buffering publishes while reconnecting, servers discovered from INFO's
// connect_urls (only the URLs given are used), lame-duck handling beyond
// reconnecting when the server goes, nkeys, JWTs and credential files,
// TLS-first handshakes, WebSocket, and compression.
//
// The parser reads from a buffered reader with explicit limits: a control
// line holds at most 4 KiB (INFO 64 KiB), sizes are parsed by hand (a bad
// one is an error), and a payload is read only after its size was checked
// against the server's max_payload.
package nats
