package rollout_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/rollout"
)

// A sample names distinct committed frames spread over the whole window, each partition
// its share; a window with fewer frames than asked gives all of them; bad requests are
// Invalid or NotFound with what was wrong.
func TestSampleFramesSpreadOverTheWindow(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	st := e.stream(t, "sample", 2)
	p, err := e.kafka.SyncProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	jpg := testkit.Media(t, "vtest_frame600.jpg")
	const cameras, each = 8, 25
	for i := range cameras * each {
		f := wire.Frame{Camera: fmt.Sprintf("c%d", i%cameras), Seq: uint64(i/cameras + 1), CaptureTime: time.Now(), IngestTime: time.Now(), ContentType: wire.ContentJPEG, Data: jpg}
		if _, _, err := p.SendMessage(kafkaclient.FrameMessage(&f, st.Topic)); err != nil {
			t.Fatal(err)
		}
	}
	_, end, err := e.kafka.Offsets(st.Topic)
	if err != nil {
		t.Fatal(err)
	}

	s, err := e.svc.SampleFrames(ctx, rollout.SampleRequest{Stream: st.Name, N: 20})
	if err != nil {
		t.Fatal(err)
	}
	if s.Held != cameras*each || len(s.Frames) != 20 || s.First.IsZero() || s.Last.Before(s.First) {
		t.Fatalf("sample of 20 of %d frames: held %d, %d frames, window %v..%v", cameras*each, s.Held, len(s.Frames), s.First, s.Last)
	}
	perPart := map[int32][]int64{}
	seen := map[wire.Source]bool{}
	for _, f := range s.Frames {
		if seen[f.Source] || f.Camera == "" || f.Time.IsZero() {
			t.Fatalf("frame %+v: repeated, or without camera or time", f)
		}
		seen[f.Source] = true
		perPart[f.Source.Partition] = append(perPart[f.Source.Partition], f.Source.Offset)
	}
	for part, offs := range perPart {
		// Each partition's share in proportion to what it holds, from its start to its end.
		share := float64(end[part]) / float64(cameras*each) * 20
		if float64(len(offs)) < share-1 || float64(len(offs)) > share+1 {
			t.Fatalf("partition %d (%d of %d frames): %d picks, want about %.1f", part, end[part], cameras*each, len(offs), share)
		}
		if first, last := offs[0], offs[len(offs)-1]; first > end[part]/4 || last < end[part]*3/4 {
			t.Fatalf("partition %d: picks %v do not span its %d frames", part, offs, end[part])
		}
	}

	all, err := e.svc.SampleFrames(ctx, rollout.SampleRequest{Stream: st.Name, N: 1000})
	if err != nil || len(all.Frames) != cameras*each {
		t.Fatalf("asking for more frames than held: %d frames, %v; want all %d", len(all.Frames), err, cameras*each)
	}

	for _, tc := range []struct {
		req  rollout.SampleRequest
		kind rollout.Kind
		want string
	}{
		{rollout.SampleRequest{Stream: st.Name, N: 0}, rollout.Invalid, "want 1 to"},
		{rollout.SampleRequest{Stream: "nope", N: 5}, rollout.NotFound, "nope"},
		{rollout.SampleRequest{Stream: st.Name, N: 5, From: time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}, rollout.Invalid, "before the earliest retained frame"},
		{rollout.SampleRequest{Stream: st.Name, N: 5, From: "yesterday"}, rollout.Invalid, "RFC 3339"},
	} {
		_, err := e.svc.SampleFrames(ctx, tc.req)
		wantError(t, err, tc.kind, tc.want)
	}
}
