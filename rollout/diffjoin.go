package rollout

import (
	"cmp"
	"container/list"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/internal/wire"
)

// The bounds of a diff's join. A diff never holds a results topic: it reads both topics a
// chunk at a time, the side that is behind first, and joins the results by frame.
const (
	// shadowWindow is what a shadow diff reports: the frames whose results were written
	// in the last shadowWindow (of the newest result read), to shadowBucket.
	shadowWindow = 5 * time.Minute
	shadowBucket = 10 * time.Second
	// maxPending bounds the frames the join holds waiting for their other side; beyond
	// it, the oldest counts as only one side's.
	maxPending = 50_000
	// pendingAge is how far (in its results' time) a shadow's other side may get past a
	// waiting frame before the frame counts as only one side's.
	pendingAge = time.Minute
	// readChunk is how many offsets a diff reads from one partition before it looks
	// again at which side is behind.
	readChunk = 4096
)

const (
	primarySide   = 0
	candidateSide = 1
)

// joinConfig is what a join compares.
type joinConfig struct {
	topics   [2]string // primary, candidate
	function string
	digest   string // the candidate's
	// startAt and stopAt limit the frames compared (the candidate's window).
	startAt, stopAt map[int32]int64
	iou             float64
	// replay: times are the frames' capture times (a replay's results are written long
	// after the primary's), the latency is the function's own, every frame read counts
	// (window 0), nothing is dropped for its age, and what waits at the end is one-sided.
	replay bool
	// window is the span a report covers (0: everything read).
	window, bucket time.Duration
	maxPending     int
	maxAge         time.Duration // 0: none
	// chain, when set, is the first stage of a second stage's diff: the results' outputs
	// on their detections are compared too (diffchain.go).
	chain string
}

// frameKey is a frame: its record in the stream's frames topic.
type frameKey struct {
	partition int32
	offset    int64
}

// waiting is a frame one side has and the other does not yet.
type waiting struct {
	key   frameKey
	at    time.Time
	sides [2]*compare.Frame
	chain [2]chainFrame // a chain diff's
}

// cursor is a join's position on one partition of one side's topic.
type cursor struct {
	next int64     // the next offset to read
	last time.Time // the time of the last record read
}

// JoinStats are a join's counters (for tests and logs).
type JoinStats struct {
	// Read counts the records read from each side's topic (primary, candidate) by the
	// last pass.
	Read [2]int
	// Pending is how many frames wait for their other side now; MaxPending the most that
	// ever waited at once.
	Pending, MaxPending int
}

// join is an incremental diff: its positions in both topics, the frames waiting for their
// other side, and the scores of the frames joined, by bucket of time. A shadow's lives as
// long as the shadow (pass reads what is new); a replay's is made for one diff.
type join struct {
	mu      sync.Mutex
	cfg     joinConfig
	id      string                     // the deployment it compares (a shadow's fingerprint)
	cursors [2]map[int32]*cursor       // per side, per partition of its topic
	initial [2]map[int32]int64         // where a new cursor starts (nil: the earliest record)
	pending map[frameKey]*list.Element // of *waiting
	order   *list.List                 // the waiting frames, oldest first
	// seen is, per side and frames partition, the highest frame offset read: a frame at
	// or below the other side's is one the other side passed.
	seen    [2]map[int32]int64
	newest  [2]time.Time // the time of each side's newest result read
	buckets map[int64]*compare.Tally
	chains  map[int64]*chainTally // a chain diff's, by the same buckets
	digests map[string]time.Time  // the primary's digests, when last seen
	stats   JoinStats
}

func newJoin(cfg joinConfig, id string) *join {
	j := &join{cfg: cfg, id: id, pending: map[frameKey]*list.Element{}, order: list.New(),
		buckets: map[int64]*compare.Tally{}, chains: map[int64]*chainTally{}, digests: map[string]time.Time{}}
	for s := range 2 {
		j.cursors[s], j.seen[s] = map[int32]*cursor{}, map[int32]int64{}
	}
	return j
}

// pass reads both topics from the join's positions to their ends now (the last stable
// offsets: read committed), the side that is behind in time first, a chunk at a time.
// Positions move record by record, so a pass that fails is taken up where it stopped.
func (j *join) pass(ctx context.Context, k Kafka) error {
	j.stats.Read = [2]int{}
	var ends [2]map[int32]int64
	for s := range 2 {
		start, end, err := k.Offsets(j.cfg.topics[s])
		if err != nil {
			return err
		}
		ends[s] = end
		for p, e := range end {
			c := j.cursors[s][p]
			if c == nil {
				c = &cursor{next: start[p]}
				if off, ok := j.initial[s][p]; ok {
					c.next = off
				}
				j.cursors[s][p] = c
			}
			if c.next > e { // the topic was made again, or cut back
				c.next = start[p]
			}
			c.next = max(c.next, start[p])
		}
	}
	for {
		side, part, c := -1, int32(0), (*cursor)(nil)
		for s := range 2 {
			for p, cc := range j.cursors[s] {
				if cc.next >= ends[s][p] {
					continue
				}
				if c == nil || cc.last.Before(c.last) || cc.last.Equal(c.last) && (s < side || s == side && p < part) {
					side, part, c = s, p, cc
				}
			}
		}
		if c == nil {
			j.resolve(resolvePass)
			return nil
		}
		to := min(c.next+readChunk, ends[side][part])
		err := k.ReadRange(ctx, j.cfg.topics[side], part, c.next, to, func(m *sarama.ConsumerMessage) error {
			c.next = m.Offset + 1
			j.stats.Read[side]++
			j.take(side, c, m)
			return nil
		})
		if err != nil {
			return err
		}
		c.next = to
		j.resolve(resolveChunk)
	}
}

// in reports whether a frame is in the compared window.
func (j *join) in(src wire.Source) bool {
	if start, ok := j.cfg.startAt[src.Partition]; ok && src.Offset < start {
		return false
	}
	if end, ok := j.cfg.stopAt[src.Partition]; ok && src.Offset >= end {
		return false
	}
	return true
}

// take joins one result record of side.
func (j *join) take(side int, c *cursor, m *sarama.ConsumerMessage) {
	var r wire.Result
	if json.Unmarshal(m.Value, &r) != nil {
		return
	}
	at := m.Timestamp
	if j.cfg.replay && !r.CaptureTime.IsZero() {
		at = r.CaptureTime
	}
	if at.After(c.last) {
		c.last = at
	}
	if r.Function != j.cfg.function || !j.in(r.Source) || side == candidateSide && r.Digest != j.cfg.digest {
		return
	}
	key := frameKey{r.Source.Partition, r.Source.Offset}
	own, ownOK := j.seen[side][key.partition]
	if !ownOK || key.offset > own {
		j.seen[side][key.partition] = key.offset
	}
	if at.After(j.newest[side]) {
		j.newest[side] = at
	}
	if r.Status != wire.StatusOK { // the side has no result for the frame
		return
	}
	if side == primarySide && at.After(j.digests[r.Digest]) {
		j.digests[r.Digest] = at
	}
	f, cf := j.frame(&r), j.chainFrameOf(&r)
	if el, ok := j.pending[key]; ok {
		w := el.Value.(*waiting)
		if w.sides[side] != nil { // a result again (at least once): the last one counts
			w.sides[side], w.chain[side] = f, cf
			return
		}
		j.remove(el)
		w.sides[side], w.chain[side] = f, cf
		j.match(w)
		return
	}
	other, otherOK := j.seen[1-side][key.partition]
	switch {
	case otherOK && key.offset <= other && ownOK && key.offset <= own:
		return // joined or counted already: a result again
	case otherOK && key.offset <= other:
		j.oneSided(side, at) // the other side went past it
		return
	}
	if len(j.pending) >= j.cfg.maxPending {
		j.expire(j.order.Front())
	}
	w := &waiting{key: key, at: at}
	w.sides[side], w.chain[side] = f, cf
	j.pending[key] = j.order.PushBack(w)
	j.stats.MaxPending = max(j.stats.MaxPending, len(j.pending))
}

// Stats are the join's counters.
func (j *join) Stats() JoinStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stats
}

// frame is r as compare takes it.
func (j *join) frame(r *wire.Result) *compare.Frame {
	lat := r.Timings.EndToEnd
	if j.cfg.replay { // a replayed frame's end to end is mostly its age
		lat = r.Timings.Decode + r.Timings.Preprocess + r.Timings.Infer
	}
	f := &compare.Frame{Camera: r.Camera, Seq: r.Seq, LatencyMs: lat, Detections: make([]compare.Detection, 0, len(r.Detections))}
	for _, d := range r.Detections {
		f.Detections = append(f.Detections, compare.Detection{Class: d.ClassID, Label: d.Label, Box: functions.Box(d.Box)})
	}
	return f
}

func (j *join) remove(el *list.Element) {
	j.order.Remove(el)
	delete(j.pending, el.Value.(*waiting).key)
}

// expire counts a waiting frame as only its side's.
func (j *join) expire(el *list.Element) {
	w := el.Value.(*waiting)
	j.remove(el)
	side := primarySide
	if w.sides[primarySide] == nil {
		side = candidateSide
	}
	j.oneSided(side, w.at)
}

func (j *join) oneSided(side int, at time.Time) {
	t := j.tally(at)
	if side == primarySide {
		t.OnlyPrimary++
	} else {
		t.OnlyCandidate++
	}
}

// What resolve counts as one-sided: the waiting frames the other side went past in their
// frames partition (after each chunk); those too that the other side's newest result is
// more than maxAge past (once a pass read everything, so no partition is behind for being
// read later); every waiting frame (a replay's end).
const (
	resolveChunk = iota
	resolvePass
	resolveAll
)

// resolve counts waiting frames as one-sided (see resolveChunk), and once a pass is done
// drops the buckets that left the window.
func (j *join) resolve(mode int) {
	all := mode == resolveAll
	for el := j.order.Front(); el != nil; {
		next := el.Next()
		w := el.Value.(*waiting)
		other := candidateSide
		if w.sides[primarySide] == nil {
			other = primarySide
		}
		off, ok := j.seen[other][w.key.partition]
		old := mode >= resolvePass && j.cfg.maxAge > 0 && j.newest[other].Sub(w.at) > j.cfg.maxAge
		if all || old || ok && w.key.offset <= off {
			j.expire(el)
		}
		el = next
	}
	j.stats.Pending = len(j.pending)
	if mode >= resolvePass && j.cfg.window > 0 {
		from := j.bucketOf(j.end().Add(-j.cfg.window))
		maps.DeleteFunc(j.buckets, func(b int64, _ *compare.Tally) bool { return b < from })
		maps.DeleteFunc(j.chains, func(b int64, _ *chainTally) bool { return b < from })
	}
}

// end is the time of the newest result read, either side.
func (j *join) end() time.Time {
	if j.newest[primarySide].After(j.newest[candidateSide]) {
		return j.newest[primarySide]
	}
	return j.newest[candidateSide]
}

func (j *join) bucketOf(t time.Time) int64 {
	if j.cfg.window <= 0 {
		return 0
	}
	return t.UnixNano() / int64(j.cfg.bucket)
}

// tally is the bucket of a frame of time at (resolve drops the buckets that left the
// window once a pass is done).
func (j *join) tally(at time.Time) *compare.Tally {
	b := j.bucketOf(at)
	t, ok := j.buckets[b]
	if !ok {
		t = compare.NewTally(j.cfg.iou)
		j.buckets[b] = t
	}
	return t
}

// report scores the window: the frames joined or counted one-sided, whose buckets are
// in it; from and to are the window's bounds (zero when nothing was read).
func (j *join) report() (rep compare.Report, digests []string, from, to time.Time) {
	sum := compare.NewTally(j.cfg.iou)
	for _, t := range j.buckets {
		sum.Add(t)
	}
	rep = sum.Report()
	to = j.end()
	if j.cfg.window > 0 && !to.IsZero() {
		from = time.Unix(0, j.bucketOf(to.Add(-j.cfg.window))*int64(j.cfg.bucket))
	}
	digests = []string{}
	for d, at := range j.digests {
		if !at.Before(from) {
			digests = append(digests, d)
		}
	}
	slices.SortFunc(digests, cmp.Compare)
	return rep, digests, from, to
}
