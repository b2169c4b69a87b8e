package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// loaded is one file of the page as Resource Timing saw it load.
type loaded struct {
	Name     string  `json:"name"`
	Transfer float64 `json:"transfer"` // bytes over the network, headers included
	Body     float64 `json:"body"`     // bytes of the file that came over the network
}

// loadedJS lists the page itself and every file it loaded from web/.
const loadedJS = `[...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
  .filter((e) => e.entryType === 'navigation' || new URL(e.name).pathname.startsWith('/web/'))
  .map((e) => ({name: new URL(e.name).pathname, transfer: e.transferSize, body: e.encodedBodySize}))`

// A reload downloads none of the page's files again: the browser asks
// with each file's ETag and the server answers 304, so each costs its
// headers only.
func TestReloadRevalidates(t *testing.T) {
	needBrowser(t)
	srv := startServer(t)
	tb := newBrowser(t).open(t, "reload", srv.URL()+"/")
	waitAllLive(t, []*tab{tb})
	first := mustEval[[]loaded](tb, loadedJS)
	var bytes float64
	for _, f := range first {
		bytes += f.Body
	}
	if len(first) < 3 || bytes < 10000 {
		t.Fatalf("first load: %d files, %v bytes; want the page, its style and its modules: %+v", len(first), bytes, first)
	}

	tb.do(chromedp.Reload())
	waitAllLive(t, []*tab{tb})
	var again []loaded
	waitFor(t, shortWait, "the reload's files in Resource Timing", func() (bool, string) {
		again = mustEval[[]loaded](tb, loadedJS)
		return len(again) == len(first), fmt.Sprintf("%d files, %d at first", len(again), len(first))
	})
	var sent float64
	var downloaded []string
	for _, f := range again {
		sent += f.Transfer
		// A 304 carries the headers only (and a file from the memory cache,
		// not revalidated at all, would cost 0): a body is thousands of bytes.
		if f.Transfer == 0 || f.Transfer >= 1000 {
			downloaded = append(downloaded, fmt.Sprintf("%s (%v bytes)", f.Name, f.Transfer))
		}
	}
	if len(downloaded) > 0 {
		t.Errorf("the reload downloaded again: %s", strings.Join(downloaded, ", "))
	}
	t.Logf("first load: %d files, %v bytes of files; reload: %v bytes over the network", len(first), bytes, sent)
	checkClean(t, tb)
}
