package controlplane

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/diplip/diplip/internal/wire"
)

// BucketZones holds the counting lines and areas of cameras.
const BucketZones = "diplip_zones"

// Zones reads and writes zone records; runners watch them through a ZoneView.
type Zones struct {
	kv jetstream.KeyValue
}

// OpenZones opens (creating) the zones bucket; one that exists keeps its replicas.
func OpenZones(ctx context.Context, nc *nats.Conn) (*Zones, error) {
	return OpenZonesWith(ctx, nc, Options{})
}

// OpenZonesWith is OpenZones with the control plane's Options (its replicas).
func OpenZonesWith(ctx context.Context, nc *nats.Conn, o Options) (*Zones, error) {
	kv, err := openBucket(ctx, nc, o, jetstream.KeyValueConfig{Bucket: BucketZones, Description: "diplip zones", History: 5})
	if err != nil {
		return nil, err
	}
	return &Zones{kv: kv}, nil
}

// Create records a new zone; ErrExists if the camera has one of that name.
func (z *Zones) Create(ctx context.Context, zone wire.Zone) error {
	return create(ctx, z.kv, zone.Key(), zone)
}

// List lists the zones of a stream ("" for every stream), by key.
func (z *Zones) List(ctx context.Context, stream string) ([]wire.Zone, error) {
	all, err := list[wire.Zone](ctx, z.kv)
	if err != nil || stream == "" {
		return all, err
	}
	return slices.DeleteFunc(all, func(x wire.Zone) bool { return x.Stream != stream }), nil
}

// Delete removes a zone.
func (z *Zones) Delete(ctx context.Context, stream, camera, name string) error {
	return del(ctx, z.kv, wire.ZoneKey(stream, camera, name))
}

// View returns a view of the zones that Run keeps current.
func (z *Zones) View() *ZoneView { return &ZoneView{zones: z, byKey: map[string]wire.Zone{}} }

// ZoneView is a local copy of the zone records, kept current by Run from a watch: a
// runner reads a camera's zones from it for every frame it tracks. Each change bumps the
// version of the camera it belongs to, so a tracker knows to rebuild its counter.
type ZoneView struct {
	zones *Zones

	mu       sync.RWMutex
	byKey    map[string]wire.Zone
	versions map[string]uint64 // STREAM.CAMERA → changes seen
}

// Run watches the zones bucket until ctx ends.
func (v *ZoneView) Run(ctx context.Context) error {
	w, err := v.zones.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	watch(ctx, w, func(e jetstream.KeyValueEntry) {
		v.mu.Lock()
		defer v.mu.Unlock()
		old, had := v.byKey[e.Key()]
		var z wire.Zone
		put := e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &z) == nil
		switch {
		case put:
			v.byKey[e.Key()] = z
			v.bump(z.Stream, z.Camera)
		case had:
			delete(v.byKey, e.Key())
			v.bump(old.Stream, old.Camera)
		}
	})
	return nil
}

func (v *ZoneView) bump(stream, camera string) {
	if v.versions == nil {
		v.versions = map[string]uint64{}
	}
	v.versions[stream+"."+camera]++
}

// Camera returns a camera's zones, by name, and the version of that set (it changes
// whenever one of them does).
func (v *ZoneView) Camera(stream, camera string) ([]wire.Zone, uint64) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	prefix := stream + "." + camera + "."
	var out []wire.Zone
	for k, z := range v.byKey {
		if strings.HasPrefix(k, prefix) {
			out = append(out, z)
		}
	}
	slices.SortFunc(out, func(a, b wire.Zone) int { return strings.Compare(a.Name, b.Name) })
	return out, v.versions[stream+"."+camera]
}
