package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/diplip/diplip/api/client"
)

// A camera pushes a frame and, when the gateway answers 503 (Kafka did not take it),
// sends the same frame again after the gateway's Retry-After. Any other error is the
// frame's or the stream's fault: sending it again would not help.
func ExampleClient_PushFrame() {
	// A stand-in for a gateway whose Kafka refuses the first frame.
	var calls atomic.Int32
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"kafka did not acknowledge the frame; retry later"}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"camera":"door","seq":1,"partition":0,"offset":7}`)
	}))
	defer gw.Close()

	cl, err := client.New(gw.URL, "")
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	frame := client.Frame{Camera: "door", Seq: 1, CaptureTime: time.Now(), Image: []byte("a JPEG")}
	for {
		ack, err := cl.PushFrame(ctx, "lobby", frame)
		var ce *client.Error
		if errors.As(err, &ce) && ce.Status == http.StatusServiceUnavailable {
			fmt.Printf("not stored (%s); again in %v\n", ce.Message, ce.RetryAfter)
			time.Sleep(time.Millisecond) // a camera would wait ce.RetryAfter
			continue
		}
		if err != nil {
			fmt.Println("frame refused:", err)
			return
		}
		fmt.Printf("stored: camera %s seq %d at partition %d offset %d\n", ack.Camera, ack.Seq, ack.Partition, ack.Offset)
		return
	}
	// Output:
	// not stored (kafka did not acknowledge the frame; retry later); again in 1s
	// stored: camera door seq 1 at partition 0 offset 7
}
