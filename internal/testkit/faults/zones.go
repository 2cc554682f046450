package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/wire"
)

// ZoneWriter writes the control plane while the faults run, as an operator would: a
// counting line on Camera every few seconds, through the gateways in turn. A zone a
// gateway acknowledged must be in the zones bucket after the schedule (Check); a write
// that failed during a fault is allowed.
type ZoneWriter struct {
	Stream, Camera string
	// Every is the time between writes. Default 4s.
	Every time.Duration

	mu      sync.Mutex
	written []string
}

// Add writes one zone named name through gw and remembers it once acknowledged.
func (z *ZoneWriter) Add(ctx context.Context, gw *client.Client, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := gw.AddZone(ctx, api.ZoneRequest{Stream: z.Stream, Camera: z.Camera, Name: name,
		Line: []api.Point{{X: 0, Y: 100}, {X: 640, Y: 100}}})
	if err == nil {
		z.mu.Lock()
		z.written = append(z.written, name)
		z.mu.Unlock()
	}
	return err
}

// Run writes a zone every Every through gateways in turn until ctx ends.
func (z *ZoneWriter) Run(ctx context.Context, gateways []string) {
	every := z.Every
	if every == 0 {
		every = 4 * time.Second
	}
	for i := 0; sleepUntil(ctx, time.Now().Add(every)); i++ {
		gw, err := client.New(gateways[i%len(gateways)], "")
		if err != nil {
			continue
		}
		_ = z.Add(ctx, gw, fmt.Sprintf("during-%03d", i)) // refused during a fault: not acknowledged, not checked
	}
}

// Written are the zones acknowledged so far.
func (z *ZoneWriter) Written() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]string(nil), z.written...)
}

// Check says which acknowledged zones cp lacks or holds wrongly.
func (z *ZoneWriter) Check(cp ControlPlane) error {
	bucket := cp.Buckets[controlplane.BucketZones]
	for _, name := range z.Written() {
		v, ok := bucket[wire.ZoneKey(z.Stream, z.Camera, name)]
		if !ok {
			return fmt.Errorf("zone %s/%s/%s was acknowledged and is gone", z.Stream, z.Camera, name)
		}
		var got wire.Zone
		if err := json.Unmarshal(v, &got); err != nil || got.Name != name || len(got.Line) != 2 {
			return fmt.Errorf("zone %s/%s/%s is not what was written: %s", z.Stream, z.Camera, name, v)
		}
	}
	return nil
}
