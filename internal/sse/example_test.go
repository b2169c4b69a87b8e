package sse_test

import (
	"fmt"
	"strings"

	"chat/internal/sse"
)

func ExampleAppendEvent() {
	msg := []byte(`{"id":"1-1","username":"alice","content":"hi"}`)
	fmt.Printf("%s", sse.AppendEvent(nil, sse.Event{ID: "1-1", Data: msg}))
	fmt.Printf("%s", sse.AppendEvent(nil, sse.Event{Type: "note", Data: []byte("two\nlines")}))
	// Output:
	// id: 1-1
	// data: {"id":"1-1","username":"alice","content":"hi"}
	//
	// event: note
	// data: two
	// data: lines
}

func ExampleReader() {
	stream := "id: 7-0\nretry: 1000\n\n: ping\n\nid: 7-1\ndata: {\"content\":\"hi\"}\n\nevent: reset\ndata: a\ndata: b\n\n"
	r := sse.NewReader(strings.NewReader(stream))
	for {
		b, err := r.Next()
		if err != nil {
			break
		}
		fmt.Printf("type=%s id=%s data=%t %q comments=%q\n", b.Type, b.ID, b.HasData, b.Data, b.Comments)
	}
	fmt.Println("retry", r.Retry(), "last id", r.LastEventID())
	// Output:
	// type=message id=7-0 data=false "" comments=[]
	// type=message id=7-0 data=false "" comments=["ping"]
	// type=message id=7-1 data=true "{\"content\":\"hi\"}" comments=[]
	// type=reset id=7-1 data=true "a\nb" comments=[]
	// retry 1s last id 7-1
}
