// Package jetstream is the small part of the NATS JetStream API the chat
// room uses, as JSON requests over the request/reply of package nats: it
// makes and reads streams, publishes with acknowledgement, reads stored
// messages, consumes a stream in order, and keeps key/value buckets. It
// knows streams and messages, not chat messages.
//
// What it implements:
//
//   - Streams: create, update, info and delete ($JS.API.STREAM.…) with the
//     configuration fields the room uses, and the stream's creation time.
//     API errors are *APIError values that errors.Is compares by
//     JetStream's err_code (ErrStreamNotFound, ErrStreamNameInUse, …).
//   - Publishing with acknowledgement (PubAck: stream, sequence,
//     duplicate), with headers such as Nats-Msg-Id,
//     Nats-Expected-Last-Subject-Sequence and Nats-TTL. Errors say whether
//     the message surely was not stored or its fate is unknown; nothing is
//     ever published twice by this package.
//   - Reading a stored message by sequence or as the last of a subject
//     ($JS.API.STREAM.MSG.GET, answered by the stream's leader).
//   - An ordered consumer: an ephemeral push consumer (no acks, flow
//     control, idle heartbeats, memory storage, one replica) that hands its
//     caller the stream's messages in order, answers flow control, watches
//     heartbeats and sequences, and after a gap, missed heartbeats or a
//     reconnect makes itself again from the last sequence delivered plus
//     one, so the caller sees no gap and no duplicate; and that says when
//     it has caught up with what the stream held.
//   - Key/value buckets laid out as nats.go lays them out (stream
//     KV_<bucket> on the subjects $KV.<bucket>.<key>; KV-Operation headers
//     for deletes and purges; the server's Nats-Marker-Reason markers for
//     values that expired): create or bind, put (with a TTL), create if
//     absent, update at a revision, get, delete, purge, and a watch (each
//     key's last entry, then every change).
//
// What it leaves out: pull consumers, durable and acknowledged consumers,
// mirrors and sources, stream templates, object stores, domains and API
// prefixes, direct get, batch and async publishing, message scheduling,
// and a bucket's key listing, history and status.
package jetstream
