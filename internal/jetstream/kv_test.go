package jetstream

import (
	"errors"
	"testing"
	"time"
)

// TestKV puts, gets, creates if absent, updates at a revision, deletes and
// purges keys, and refuses bad keys and bucket names.
func TestKV(t *testing.T) {
	_, js := startJS(t)
	kv, err := js.CreateKV(ctx(t), KVConfig{Bucket: "bans"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.StreamInfo(ctx(t), "KV_bans")
	if err != nil || info.Config.MaxMsgsPerSubject != 1 || info.Config.Discard != DiscardNew ||
		!info.Config.AllowRollup || !info.Config.DenyDelete || !info.Config.AllowDirect ||
		len(info.Config.Subjects) != 1 || info.Config.Subjects[0] != "$KV.bans.>" {
		t.Errorf("bucket stream = %+v, %v", info, err)
	}
	if _, err := js.CreateKV(ctx(t), KVConfig{Bucket: "bans"}); err != nil {
		t.Errorf("CreateKV again with the same configuration: %v", err)
	}
	if _, err := js.KV(ctx(t), "bans"); err != nil {
		t.Errorf("KV(bans): %v", err)
	}
	if _, err := js.KV(ctx(t), "nope"); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("KV(nope): %v, want ErrStreamNotFound", err)
	}

	get := func(key, want string) {
		t.Helper()
		e, err := kv.Get(ctx(t), key)
		if want == "" {
			if !errors.Is(err, ErrKeyNotFound) {
				t.Errorf("Get(%s) = %+v, %v; want ErrKeyNotFound", key, e, err)
			}
			return
		}
		if err != nil || string(e.Value) != want || e.Key != key || e.Op != KVPut {
			t.Errorf("Get(%s) = %+v, %v; want %q", key, e, err, want)
		}
	}
	rev, err := kv.Put(ctx(t), "10.0.0.1", []byte("v1"))
	if err != nil || rev != 1 {
		t.Fatalf("Put = %d, %v", rev, err)
	}
	get("10.0.0.1", "v1")
	get("10.0.0.2", "")
	if _, err := kv.Create(ctx(t), "10.0.0.1", []byte("again"), 0); !errors.Is(err, ErrKeyExists) {
		t.Errorf("Create of an existing key: %v, want ErrKeyExists", err)
	}
	if _, err := kv.Update(ctx(t), "10.0.0.1", []byte("v2"), 5); !errors.Is(err, ErrKeyExists) {
		t.Errorf("Update at a wrong revision: %v, want ErrKeyExists", err)
	}
	if rev2, err := kv.Update(ctx(t), "10.0.0.1", []byte("v2"), rev); err != nil || rev2 != rev+1 {
		t.Errorf("Update at the right revision = %d, %v; want revision %d", rev2, err, rev+1)
	}
	get("10.0.0.1", "v2")
	if err := kv.Delete(ctx(t), "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	get("10.0.0.1", "")
	if _, err := kv.Create(ctx(t), "10.0.0.1", []byte("v3"), 0); err != nil {
		t.Errorf("Create after Delete: %v", err)
	}
	get("10.0.0.1", "v3")
	if err := kv.Purge(ctx(t), "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	get("10.0.0.1", "")
	if _, err := kv.Create(ctx(t), "new/key=1", []byte("x"), 0); err != nil {
		t.Errorf("Create of a new key: %v", err)
	}
	get("new/key=1", "x")

	for _, key := range []string{"", "a b", ".a", "a.", "a..b", "a*", "a>", "ä"} {
		if _, err := kv.Put(ctx(t), key, nil); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", key, err)
		}
	}
	for _, b := range []string{"", "a.b", "a b", "a*"} {
		if _, err := js.CreateKV(ctx(t), KVConfig{Bucket: b}); !errors.Is(err, ErrInvalidBucket) {
			t.Errorf("CreateKV(%q): %v, want ErrInvalidBucket", b, err)
		}
	}
}

// watchNext returns the watcher's next entry within waitTimeout.
func watchNext(t *testing.T, w *KVWatcher) *KVEntry {
	t.Helper()
	e, err := w.Next(ctx(t))
	if err != nil {
		t.Fatalf("watcher Next: %v", err)
	}
	return e
}

// expectEntry reads the watcher's next entry and wants key, op and value.
func expectEntry(t *testing.T, w *KVWatcher, key string, op KVOp, value string) *KVEntry {
	t.Helper()
	e := watchNext(t, w)
	if e.Key != key || e.Op != op || string(e.Value) != value {
		t.Fatalf("watcher gave %s %s %q (rev %d), want %s %s %q", e.Op, e.Key, e.Value, e.Revision, op, key, value)
	}
	return e
}

// TestKVWatch watches a bucket: each key's last entry first (deletes
// included), caught up, then every change live, filtered by key.
func TestKVWatch(t *testing.T) {
	_, js := startJS(t)
	kv, err := js.CreateKV(ctx(t), KVConfig{Bucket: "presence", History: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, kvs := range [][2]string{{"node.a", "1"}, {"node.b", "1"}, {"node.a", "2"}, {"other", "x"}} {
		if _, err := kv.Put(ctx(t), kvs[0], []byte(kvs[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := kv.Delete(ctx(t), "node.b"); err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx(t), "node.*")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	first := expectEntry(t, w, "node.a", KVPut, "2")
	if first.Revision != 3 || time.Since(first.Created) > time.Minute {
		t.Errorf("first entry %+v, want revision 3 created now", first)
	}
	expectEntry(t, w, "node.b", KVDelete, "")
	select {
	case <-w.CaughtUp():
	case <-time.After(waitTimeout):
		t.Fatal("watcher not caught up after the initial entries")
	}
	if _, err := kv.Put(ctx(t), "other", []byte("ignored")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx(t), "node.c", []byte("3")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx(t), "node.a"); err != nil {
		t.Fatal(err)
	}
	expectEntry(t, w, "node.c", KVPut, "3")
	expectEntry(t, w, "node.a", KVPurge, "")
	if _, err := kv.Watch(ctx(t), "a*"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Watch(a*): %v, want ErrInvalidKey", err)
	}
}

// TestKVTTL puts a value with its own TTL in a bucket with limit markers:
// the watcher sees it expire (a purge marker from the server), Get no
// longer finds it, and Create may make it again.
func TestKVTTL(t *testing.T) {
	_, js := startJS(t)
	kv, err := js.CreateKV(ctx(t), KVConfig{Bucket: "holds", LimitMarkerTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.StreamInfo(ctx(t), "KV_holds")
	if err != nil || !info.Config.AllowMsgTTL || info.Config.SubjectDeleteMarkerTTL != time.Second {
		t.Fatalf("bucket stream = %+v, %v; want TTLs allowed and markers kept 1s", info, err)
	}
	w, err := kv.Watch(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := kv.Create(ctx(t), "alice", []byte("node1"), time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx(t), "alice", []byte("node2"), time.Second); !errors.Is(err, ErrKeyExists) {
		t.Errorf("Create of a live key: %v, want ErrKeyExists", err)
	}
	start := time.Now()
	expectEntry(t, w, "alice", KVPut, "node1")
	expectEntry(t, w, "alice", KVPurge, "")
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("expired after %v, want about a second", d)
	}
	if _, err := kv.Get(ctx(t), "alice"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Get after expiry: %v, want ErrKeyNotFound", err)
	}
	if _, err := kv.Create(ctx(t), "alice", []byte("node2"), 0); err != nil {
		t.Errorf("Create after expiry: %v", err)
	}
	if _, err := kv.PutTTL(ctx(t), "bob", []byte("x"), time.Minute); err != nil {
		t.Errorf("PutTTL: %v", err)
	}
	expectEntry(t, w, "alice", KVPut, "node2")
	expectEntry(t, w, "bob", KVPut, "x")
}

// TestKVUpdateTTL updates a key at its revision with a TTL: the new value
// expires by itself (the watcher sees the server's marker), and an update
// at a stale revision is refused.
func TestKVUpdateTTL(t *testing.T) {
	_, js := startJS(t)
	kv, err := js.CreateKV(ctx(t), KVConfig{Bucket: "leases", LimitMarkerTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	rev, err := kv.Create(ctx(t), "alice", []byte("v1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	expectEntry(t, w, "alice", KVPut, "v1")
	if _, err := kv.UpdateTTL(ctx(t), "alice", []byte("v2"), rev, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.UpdateTTL(ctx(t), "alice", []byte("v3"), rev, time.Second); !errors.Is(err, ErrKeyExists) {
		t.Errorf("UpdateTTL at a stale revision: %v, want ErrKeyExists", err)
	}
	expectEntry(t, w, "alice", KVPut, "v2")
	expectEntry(t, w, "alice", KVPurge, "")
	if _, err := kv.Get(ctx(t), "alice"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Get after the updated value expired: %v, want ErrKeyNotFound", err)
	}
}
