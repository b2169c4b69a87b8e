package clusterstate

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"chat/internal/jetstream"
	"chat/internal/names"
)

// openNames opens nd's held names in a new table with opts, stopped when
// the test ends.
func openNames(t *testing.T, nd *node, opts names.Options) *names.Table {
	t.Helper()
	table := names.New(opts)
	n, err := OpenNames(ctx(t), nd.cfg, table)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return table
}

// holds returns the skeletons table holds now.
func holds(table *names.Table) string {
	var out []string
	for _, h := range table.List(time.Now()) {
		out = append(out, h.Skeleton)
	}
	return strings.Join(out, ",")
}

// ttlOf returns the Nats-TTL header of the last value of skeleton's key in
// the names bucket.
func ttlOf(t *testing.T, nd *node, skeleton string) string {
	t.Helper()
	m, err := nd.cfg.JS.GetLastMsg(ctx(t), "KV_"+Bucket(testStream, "names"), "$KV."+Bucket(testStream, "names")+"."+names.Key(skeleton))
	if err != nil {
		t.Fatal(err)
	}
	return m.Header.Get(jetstream.TTLHeader)
}

// TestNamesAcrossNodes holds a name through one node: the other refuses it
// to another identity at once (the bucket refuses the take) and in its
// table within 2 s, lets its holder use it, and lists it; freed on the
// other node, it leaves the first and another identity takes it.
func TestNamesAcrossNodes(t *testing.T) {
	srv := startServer(t)
	a, b := newNode(t, srv.URL()), newNode(t, srv.URL())
	opts := names.Options{Hold: time.Hour}
	ta, tb := openNames(t, a, opts), openNames(t, b, opts)
	s, err := ta.Open("Alice", "pat", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(time.Now())
	if err := tb.Use("ALICE", "quinn", time.Now()); !errors.Is(err, names.ErrHeld) {
		t.Errorf("another identity on the other node: %v, want ErrHeld", err)
	}
	d := waitFor(t, 2*time.Second, "alice in the other node's table", func() bool { return holds(tb) == "alice" })
	t.Logf("the hold reached the other node's table in %v", d)
	if err := tb.Check("alice", "quinn", time.Now()); !errors.Is(err, names.ErrHeld) {
		t.Errorf("Check by another identity on the other node: %v, want ErrHeld", err)
	}
	if err := tb.Use("alice", "pat", time.Now()); err != nil {
		t.Errorf("the holder on the other node: %v", err)
	}
	if _, ok, err := tb.Free("alice", time.Now()); !ok || err != nil {
		t.Fatalf("Free on the other node: %v, %v", ok, err)
	}
	waitFor(t, 2*time.Second, "alice gone from the first node", func() bool { return holds(ta) == "" })
	if err := ta.Use("alice", "quinn", time.Now()); err != nil {
		t.Errorf("another identity after the free: %v", err)
	}
}

// TestNamesLeaseAndRelease follows a name with no hold time that streams
// of one identity carry on two nodes: while a stream carries it, the
// bucket keeps it for names.Lease and Save renews it; when one node's last
// stream closes it releases the name, the other node (whose stream still
// carries it) takes it back, and only when that stream closes too is the
// name free.
func TestNamesLeaseAndRelease(t *testing.T) {
	srv := startServer(t)
	a, b := newNode(t, srv.URL()), newNode(t, srv.URL())
	opts := names.Options{Hold: 0}
	ta, tb := openNames(t, a, opts), openNames(t, b, opts)
	sa, err := ta.Open("cy", "pat", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := ttlOf(t, a, "cy"); got != "180s" {
		t.Errorf("TTL of a hold a stream carries: %q, want the 3-minute lease", got)
	}
	waitFor(t, 2*time.Second, "cy on the other node", func() bool { return holds(tb) == "cy" })
	sb, err := tb.Open("cy", "pat", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	before, _ := a.cfg.JS.GetLastMsg(ctx(t), "KV_"+Bucket(testStream, "names"), "$KV."+Bucket(testStream, "names")+"."+names.Key("cy"))
	if err := ta.Save(time.Now()); err != nil {
		t.Fatal(err)
	}
	after, _ := a.cfg.JS.GetLastMsg(ctx(t), "KV_"+Bucket(testStream, "names"), "$KV."+Bucket(testStream, "names")+"."+names.Key("cy"))
	if after.Seq <= before.Seq {
		t.Errorf("Save did not renew a hold a stream carries: revision %d, then %d", before.Seq, after.Seq)
	}
	sa.Close(time.Now()) // a releases; b's stream still carries it
	waitFor(t, 2*time.Second, "b taking cy back", func() bool {
		_, err := b.cfg.JS.GetLastMsg(ctx(t), "KV_"+Bucket(testStream, "names"), "$KV."+Bucket(testStream, "names")+"."+names.Key("cy"))
		return err == nil && ta.Use("cy", "quinn", time.Now()) != nil
	})
	if err := ta.Use("cy", "quinn", time.Now()); !errors.Is(err, names.ErrHeld) {
		t.Errorf("another identity while b's stream carries cy: %v, want ErrHeld", err)
	}
	sb.Close(time.Now())
	waitFor(t, 2*time.Second, "cy free once every stream closed", func() bool {
		_, err := ta.Open("cy", "quinn", time.Now())
		return err == nil
	})
}

// TestNamesRefuseBadValues writes entries no node writes into the names
// bucket: a key that is no skeleton's, a value for another name, a value
// that is not a hold, one without identity. Each is skipped with a
// warning; a good hold after them applies.
func TestNamesRefuseBadValues(t *testing.T) {
	srv := startServer(t)
	nd := newNode(t, srv.URL())
	table := openNames(t, nd, names.Options{Hold: time.Hour})
	kv, err := nd.cfg.JS.KV(ctx(t), Bucket(testStream, "names"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	hold := func(id, name string) string {
		return `{"id":"` + id + `","name":"` + name + `","since":` + strconv.FormatInt(now, 10) + `,"last":` + strconv.FormatInt(now, 10) + `}`
	}
	for _, kvs := range [][2]string{
		{"not*base64", hold("x", "eve")},
		{names.Key("eve"), hold("x", "mallory")},
		{names.Key("eve"), `{"id":"x","name":"eve","since":1,"last":1,"admin":true}`},
		{names.Key("eve"), hold("", "eve")},
		{names.Key("аlice"), hold("x", "аlice")},
		{names.Key("dan"), hold("x", "dan")},
	} {
		if _, err := kv.Put(ctx(t), kvs[0], []byte(kvs[1])); err != nil && !errors.Is(err, jetstream.ErrInvalidKey) {
			t.Fatal(err)
		}
	}
	waitFor(t, 2*time.Second, "the good hold", func() bool { return holds(table) != "" })
	if got := holds(table); got != "dan" {
		t.Errorf("table holds %q, want only dan", got)
	}
	if n := strings.Count(nd.logs.String(), "a held name in the room's bucket refused"); n != 4 {
		t.Errorf("%d refusals logged, want 4:\n%s", n, nd.logs)
	}
}

// TestNamesUnavailable takes a name while NATS is down: the take fails at
// once with names.ErrUnavailable and holds nothing.
func TestNamesUnavailable(t *testing.T) {
	srv := startServer(t)
	nd := newNode(t, srv.URL())
	table := openNames(t, nd, names.Options{Hold: time.Hour})
	srv.Stop()
	if err := table.Use("newname", "pat", time.Now()); !errors.Is(err, names.ErrUnavailable) {
		t.Errorf("a take with NATS down: %v, want ErrUnavailable", err)
	}
	if got := holds(table); got != "" {
		t.Errorf("table holds %q after a failed take", got)
	}
}
