package crosscheck

import (
	"errors"
	"fmt"
	"testing"
	"time"

	jsgo "github.com/nats-io/nats.go/jetstream"

	"chat/internal/jetstream"
)

// entry is a key/value entry as both clients report it.
type entry struct {
	key, op, value string
	rev            uint64
}

// String shows an entry in failure messages.
func (e entry) String() string { return fmt.Sprintf("%s %s=%q @%d", e.op, e.key, e.value, e.rev) }

// opName maps nats.go's operations to ours.
var opName = map[jsgo.KeyValueOp]string{jsgo.KeyValuePut: "put", jsgo.KeyValueDelete: "delete", jsgo.KeyValuePurge: "purge"}

// TestKVConfigSame makes a bucket with each client and the same settings
// with the other: the server finds the two stream configurations equal,
// so each client's create succeeds on the other's bucket.
func TestKVConfigSame(t *testing.T) {
	ours, _, js := clients(t)
	if _, err := ours.CreateKV(ctx(t), jetstream.KVConfig{Bucket: "ours", History: 1, LimitMarkerTTL: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx(t), jsgo.KeyValueConfig{Bucket: "ours", History: 1, LimitMarkerTTL: 2 * time.Second}); err != nil {
		t.Errorf("nats.go CreateKeyValue on our bucket: %v", err)
	}
	if _, err := js.CreateKeyValue(ctx(t), jsgo.KeyValueConfig{Bucket: "theirs", History: 5, TTL: time.Minute, Storage: jsgo.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := ours.CreateKV(ctx(t), jetstream.KVConfig{Bucket: "theirs", History: 5, TTL: time.Minute, Storage: jetstream.MemoryStorage}); err != nil {
		t.Errorf("our CreateKV on nats.go's bucket: %v", err)
	}
	kv, err := js.KeyValue(ctx(t), "ours")
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx(t))
	if err != nil || st.History() != 1 || st.TTL() != 0 || st.LimitMarkerTTL() != 2*time.Second || st.BackingStore() != "JetStream" {
		t.Errorf("nats.go Status of our bucket = %+v, %v", st, err)
	}
}

// TestKVInterop has both clients work on one bucket in turn (puts,
// deletes, a purge, creates with a TTL that expire) and checks that each
// reads what the other wrote, and that a watcher of each client sees the
// same entries in the same order.
func TestKVInterop(t *testing.T) {
	ours, _, js := clients(t)
	okv, err := ours.CreateKV(ctx(t), jetstream.KVConfig{Bucket: "shared", LimitMarkerTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	gkv, err := js.KeyValue(ctx(t), "shared")
	if err != nil {
		t.Fatal(err)
	}
	ow, err := okv.Watch(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer ow.Stop()
	gw, err := gkv.WatchAll(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Stop()
	if e := <-gw.Updates(); e != nil {
		t.Fatalf("nats.go watcher of an empty bucket gave %v before its end of initial values", e)
	}

	// oursHas and goHas check that a client reads value for key ("" for
	// none).
	oursHas := func(key, value string) {
		t.Helper()
		e, err := okv.Get(ctx(t), key)
		if value == "" {
			if !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("our Get(%s) = %+v, %v; want not found", key, e, err)
			}
		} else if err != nil || string(e.Value) != value {
			t.Errorf("our Get(%s) = %+v, %v; want %q", key, e, err, value)
		}
	}
	goHas := func(key, value string) {
		t.Helper()
		e, err := gkv.Get(ctx(t), key)
		if value == "" {
			if !errors.Is(err, jsgo.ErrKeyNotFound) {
				t.Errorf("nats.go Get(%s) = %v, %v; want not found", key, e, err)
			}
		} else if err != nil || string(e.Value()) != value {
			t.Errorf("nats.go Get(%s) = %v, %v; want %q", key, e, err, value)
		}
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err = gkv.Put(ctx(t), "a", []byte("1"))
	must("nats.go Put a", err)
	oursHas("a", "1")
	_, err = okv.Put(ctx(t), "b", []byte("2"))
	must("our Put b", err)
	goHas("b", "2")
	must("our Delete a", okv.Delete(ctx(t), "a"))
	goHas("a", "")
	must("nats.go Delete b", gkv.Delete(ctx(t), "b"))
	oursHas("b", "")
	_, err = okv.Put(ctx(t), "c", []byte("3"))
	must("our Put c", err)
	must("nats.go Purge c", gkv.Purge(ctx(t), "c"))
	oursHas("c", "")
	_, err = okv.Create(ctx(t), "d", []byte("4"), time.Second)
	must("our Create d with a TTL", err)
	goHas("d", "4")
	_, err = gkv.Create(ctx(t), "e", []byte("5"), jsgo.KeyTTL(time.Second))
	must("nats.go Create e with a TTL", err)
	oursHas("e", "5")
	if _, err := gkv.Create(ctx(t), "d", []byte("x")); !errors.Is(err, jsgo.ErrKeyExists) {
		t.Errorf("nats.go Create of our live key: %v, want ErrKeyExists", err)
	}
	if _, err := okv.Create(ctx(t), "e", []byte("x"), 0); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Errorf("our Create of nats.go's live key: %v, want ErrKeyExists", err)
	}

	want := []entry{
		{"a", "put", "1", 1}, {"b", "put", "2", 2}, {"a", "delete", "", 3}, {"b", "delete", "", 4},
		{"c", "put", "3", 5}, {"c", "purge", "", 6}, {"d", "put", "4", 7}, {"e", "put", "5", 8},
	}
	got := readOurs(t, ow, len(want)+2)
	gotGo := readGo(t, gw, len(want)+2)
	for i := range got {
		if got[i] != gotGo[i] {
			t.Errorf("entry %d: ours %v, nats.go %v", i, got[i], gotGo[i])
		}
		if i < len(want) && got[i] != want[i] {
			t.Errorf("entry %d: %v, want %v", i, got[i], want[i])
		}
	}
	for _, e := range got[len(want):] { // the two expiries, in either order
		if e.op != "purge" || (e.key != "d" && e.key != "e") {
			t.Errorf("entry %v, want the expiry of d or e", e)
		}
	}
	oursHas("d", "")
	goHas("e", "")
}

// readOurs reads n entries from our watcher.
func readOurs(t *testing.T, w *jetstream.KVWatcher, n int) []entry {
	t.Helper()
	var out []entry
	for len(out) < n {
		e, err := w.Next(ctx(t))
		if err != nil {
			t.Fatalf("our watcher after %v: %v", out, err)
		}
		out = append(out, entry{e.Key, e.Op.String(), string(e.Value), e.Revision})
	}
	return out
}

// readGo reads n entries from nats.go's watcher.
func readGo(t *testing.T, w jsgo.KeyWatcher, n int) []entry {
	t.Helper()
	var out []entry
	timeout := time.After(waitTimeout)
	for len(out) < n {
		select {
		case e := <-w.Updates():
			if e != nil {
				out = append(out, entry{e.Key(), opName[e.Operation()], string(e.Value()), e.Revision()})
			}
		case <-timeout:
			t.Fatalf("nats.go watcher after %v: no more entries in %v", out, waitTimeout)
		}
	}
	return out
}
