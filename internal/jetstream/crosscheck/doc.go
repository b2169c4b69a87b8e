// Package crosscheck holds the tests that check the chat server's own NATS
// and JetStream client (chat/internal/nats, chat/internal/jetstream)
// against the official Go client, github.com/nats-io/nats.go, on a real
// nats-server: what one writes, the other reads back the same (subjects,
// headers, message ids, sequence numbers, a stream's configuration, key
// and value entries); and that a chat node in cluster mode (the server's
// binary) writes the records nats.go reads back as the room's design says,
// and handles what nats.go publishes on the room's subject. It is a module
// of its own so that the server module keeps to the standard library.
//
// Run them with
//
//	cd internal/jetstream/crosscheck && go test ./...
package crosscheck
