package rollout_test

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
	"github.com/diplip/diplip/rollout"
)

// pushReID builds the person re-id example (an embed function) and pushes it.
func (e *env) pushReID(t *testing.T, tag string) string {
	t.Helper()
	img, _, err := registry.Build("../functions/examples/person-reid", nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := registry.ParseReference(e.host+"/fn/person-reid:"+tag, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Push(context.Background(), img, ref, nil); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

// chainResult is an enriched result (or, without stages, a first stage's) of frame off of
// partition 0: one person, with an embedding when emb is not nil.
func chainResult(topic, function, digest string, off int64, emb []float32, at time.Time) *sarama.ProducerMessage {
	r := wire.Result{Stream: "s", Camera: "c", Seq: uint64(off + 1), CaptureTime: at, Function: function, Digest: digest, Status: wire.StatusOK,
		Source:     wire.Source{Partition: 0, Offset: off},
		Detections: []wire.Detection{{ClassID: 0, Label: "person", Score: 0.9, Box: wire.Box{X2: 50, Y2: 120}, Embedding: emb}}}
	v, _ := json.Marshal(r)
	return &sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.ByteEncoder(v), Timestamp: at}
}

// A second stage's replay runs over its first stage's stored results: refused with NotFound
// (naming what is deployed) when the first stage has no primary on the stream, Invalid
// when the results topic holds nothing or the window is outside it; accepted, its window
// is in the results topic's offsets, its group starts there, and it takes the live second
// stage's selection. Its diff compares its embeddings with the live second stage's on the
// frames it has results for. A second stage's shadow has its own key, group and topic, is
// the stream's one shadow, and its diff, promotion and removal work like a primary's; a
// second stage with a shadow is not undeployed; undeploying a second stage removes its
// results topic.
func TestSecondStageReplayAndShadow(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc, kc := e.svc, e.kafka
	st := e.stream(t, "ch", 1)
	e.push(t, st, 4)
	reid := e.pushReID(t, "v1")
	if _, err := svc.Deploy(ctx, rollout.Request{Ref: e.ref, Stream: st.Name}); err != nil {
		t.Fatal(err)
	}
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	_, err := svc.StartReplay(ctx, rollout.ReplayRequest{Stream: st.Name, Ref: reid, After: "nanodet"})
	wantError(t, err, rollout.NotFound, "deployed there: yolox-nano")
	_, err = svc.StartReplay(ctx, rollout.ReplayRequest{Stream: st.Name, Ref: reid, After: "yolox-nano"})
	wantError(t, err, rollout.Invalid, "holds no first-stage results")
	_, err = svc.StartReplay(ctx, rollout.ReplayRequest{Stream: st.Name, Ref: reid, MinSize: 60})
	wantError(t, err, rollout.Invalid, "add after FUNCTION")

	// The live second stage, and the first stage's stored results of frames 0..3.
	live, err := svc.Deploy(ctx, rollout.Request{Ref: reid, Stream: st.Name, After: "yolox-nano", MinSize: 60, Policy: "replay"})
	if err != nil {
		t.Fatal(err)
	}
	liveTopic := live.ResultsTopic(st)
	now := time.Now()
	var batch []*sarama.ProducerMessage
	for off := range int64(4) {
		batch = append(batch, chainResult(st.ResultsTopic, "yolox-nano", "det@sha256:1", off, nil, now))
	}
	prod := resultsProducer(t)
	if err := prod.SendMessages(batch); err != nil {
		t.Fatal(err)
	}
	_, err = svc.StartReplay(ctx, rollout.ReplayRequest{Stream: st.Name, Ref: reid, After: "yolox-nano", From: rfc(now.Add(-time.Hour))})
	wantError(t, err, rollout.Invalid, "holds first-stage results from")
	_, err = svc.StartReplay(ctx, rollout.ReplayRequest{Stream: st.Name, Ref: reid, After: "yolox-nano", To: rfc(now.Add(-time.Hour))})
	wantError(t, err, rollout.Invalid, st.ResultsTopic)

	r, err := svc.StartReplay(ctx, rollout.ReplayRequest{Stream: st.Name, Ref: reid, After: "yolox-nano", Name: "reid-r1"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Role != wire.RoleReplay || !r.SecondStage() || r.After.MinSize != 60 || r.Key() != "person-reid."+st.Name+".replay.reid-r1" ||
		r.StartAt[0] != 0 || r.StopAt[0] != 4 || r.Replay.Total != 4 || r.InputTopic(st) != st.ResultsTopic {
		t.Fatalf("second stage's replay %+v (after %+v)", r, r.After)
	}
	if next, err := kc.Committed(r.Group(), st.ResultsTopic); err != nil || next[0] != 0 {
		t.Fatalf("the replay's group on %s: %v, %v", st.ResultsTopic, next, err)
	}
	if n, err := svc.ReplayProgress(ctx, r); err != nil || n != 0 {
		t.Fatalf("progress %d, %v", n, err)
	}

	// The live second stage's results of frames 0..3 and the replay's of 1..3: the same
	// embeddings but frame 3's.
	unit := func(a, b float32) []float32 {
		n := float32(math.Hypot(float64(a), float64(b)))
		return []float32{a / n, b / n}
	}
	batch = batch[:0]
	for off := range int64(4) {
		batch = append(batch, chainResult(liveTopic, "person-reid", "reid@sha256:live", off, unit(1, 0), now))
	}
	for off := int64(1); off < 4; off++ {
		emb := unit(1, 0)
		if off == 3 {
			emb = unit(1, 1) // cosine 0.7071
		}
		batch = append(batch, chainResult(r.ResultsTopic(st), "person-reid", r.Digest, off, emb, now))
	}
	if err := prod.SendMessages(batch); err != nil {
		t.Fatal(err)
	}
	d, err := svc.DiffReplay(ctx, st.Name, "reid-r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	ch := d.Chain
	if d.Report.Frames != 3 || d.Report.OnlyPrimary != 0 || d.Report.OnlyCandidate != 0 || d.Primary.Kind != "after" || d.Primary.Topic != liveTopic ||
		ch == nil || ch.First != "yolox-nano" || ch.Detections != 3 || ch.Embedded != 3 || ch.PrimaryEmbedded != 3 || ch.CandidateEmbedded != 3 ||
		math.Abs(ch.CosineMean-(2+math.Sqrt2/2)/3) > 1e-6 || math.Abs(ch.CosineP10-math.Sqrt2/2) > 1e-6 {
		t.Fatalf("second stage's replay diff %+v, chain %+v", d, ch)
	}

	// Its shadow.
	if _, err := svc.Deploy(ctx, rollout.Request{Ref: reid, Stream: st.Name, After: "nanodet", Role: wire.RoleShadow}); rollout.KindOf(err) != rollout.Invalid {
		t.Fatalf("a shadow of a second stage that does not run: %v", err)
	}
	_, err = svc.Deploy(ctx, rollout.Request{Ref: reid, Stream: st.Name, Role: wire.RoleShadow})
	wantError(t, err, rollout.Invalid, "add --after yolox-nano")
	sh, err := svc.Deploy(ctx, rollout.Request{Ref: reid, Stream: st.Name, After: "yolox-nano", Role: wire.RoleShadow})
	if err != nil {
		t.Fatal(err)
	}
	shTopic := sh.ResultsTopic(st)
	if sh.Key() != "person-reid."+st.Name+".after.yolox-nano.shadow" || sh.After.MinSize != 60 || sh.Policy != wire.PolicyReplay ||
		sh.StartAt[0] != 4 || shTopic != liveTopic+".shadow" {
		t.Fatalf("second stage's shadow %+v (after %+v)", sh, sh.After)
	}
	if ok, _ := kc.TopicExists(shTopic); !ok {
		t.Fatalf("no topic %s", shTopic)
	}
	if next, err := kc.Committed(sh.Group(), st.ResultsTopic); err != nil || next[0] != 4 {
		t.Fatalf("the shadow's group on %s: %v, %v", st.ResultsTopic, next, err)
	}
	_, err = svc.Deploy(ctx, rollout.Request{Ref: e.ref, Stream: st.Name, Role: wire.RoleShadow})
	wantError(t, err, rollout.Conflict, "already has a shadow of person-reid")
	wantError(t, svc.UndeployChain(ctx, "person-reid", st.Name, rollout.Undeploying{After: "yolox-nano"}), rollout.Conflict, "has a shadow")
	wantError(t, svc.UndeployChain(ctx, "yolox-nano", st.Name, rollout.Undeploying{}), rollout.Conflict, "--cascade")
	if _, err := svc.DiffShadow(ctx, st.Name, 0); err != nil {
		t.Fatal(err)
	}

	// Promoted, it is the live second stage; its record and topic go.
	p, err := svc.Promote(ctx, st.Name)
	if err != nil {
		t.Fatal(err)
	}
	if p.Key() != live.Key() || p.Generation != 2 || p.After.MinSize != 60 {
		t.Fatalf("promoted %+v", p)
	}
	if _, err := e.store.DeploymentByKey(ctx, sh.Key()); err == nil {
		t.Fatal("the promoted shadow is still recorded")
	}
	if ok, _ := kc.TopicExists(shTopic); ok {
		t.Fatalf("the promoted shadow's topic %s is still there", shTopic)
	}

	// A shadow again, then undeployed: it goes with its topic; then the live one with its.
	if sh, err = svc.Deploy(ctx, rollout.Request{Ref: reid, Stream: st.Name, After: "yolox-nano", Role: wire.RoleShadow, MinSize: 40}); err != nil || sh.After.MinSize != 40 {
		t.Fatalf("shadow %+v: %v", sh.After, err)
	}
	if err := svc.UndeployShadow(ctx, "person-reid", st.Name); err != nil {
		t.Fatal(err)
	}
	if ok, _ := kc.TopicExists(shTopic); ok {
		t.Fatalf("the undeployed shadow's topic %s is still there", shTopic)
	}
	if err := svc.UndeployChain(ctx, "person-reid", st.Name, rollout.Undeploying{After: "yolox-nano"}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := kc.TopicExists(liveTopic); ok {
		t.Fatalf("the undeployed second stage's topic %s is still there", liveTopic)
	}
	_, err = svc.DiffReplay(ctx, st.Name, "reid-r1", 0)
	wantError(t, err, rollout.NotFound, "no live second stage person-reid after yolox-nano")
	if err := svc.RemoveReplay(ctx, "reid-r1"); err != nil {
		t.Fatal(err)
	}
}
