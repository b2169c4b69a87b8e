package limit

// Tally counts what each client address holds (streams, say) against a
// per-address cap: under the address key and, for an IPv6 /64, under its
// wider prefixes too (Scopes), each with its multiple of the cap. It is not
// safe for concurrent use.
type Tally struct {
	// max is the cap per address; 0 means none.
	max int
	// n counts per key.
	n map[string]int
}

// NewTally returns an empty tally with a cap of max per address (0: no
// cap).
func NewTally(max int) *Tally { return &Tally{max: max, n: make(map[string]int)} }

// Full reports whether one more for key would pass the cap, for key itself
// or for a wider prefix holding it.
func (t *Tally) Full(key string) bool {
	if t.max <= 0 {
		return false
	}
	for _, sc := range Scopes(key) {
		if t.n[sc.Key] >= t.max*sc.Factor {
			return true
		}
	}
	return false
}

// Add counts one more for key.
func (t *Tally) Add(key string) {
	for _, sc := range Scopes(key) {
		t.n[sc.Key]++
	}
}

// Remove counts one less for key, forgetting keys that reach zero.
func (t *Tally) Remove(key string) {
	for _, sc := range Scopes(key) {
		if t.n[sc.Key]--; t.n[sc.Key] <= 0 {
			delete(t.n, sc.Key)
		}
	}
}

// Clear forgets every count.
func (t *Tally) Clear() { clear(t.n) }

// Len returns how many keys hold a count.
func (t *Tally) Len() int { return len(t.n) }
