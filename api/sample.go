package api

import "time"

// FrameSample is the answer of GET /v1/streams/{stream}/sample?n=N[&from=T][&to=T]: up to
// N of the stream's recorded frames spread evenly over the window, by position (read
// each with GET /v1/streams/{stream}/frames/{partition}/{offset}). Held is how many
// frames the window holds: fewer than N means every one of them was named.
type FrameSample struct {
	Stream string        `json:"stream"`
	Held   int64         `json:"held"`
	First  time.Time     `json:"first,omitzero"` // the earliest frame the stream retains
	Last   time.Time     `json:"last,omitzero"`  // and the latest
	Frames []SampleFrame `json:"frames"`
}

// SampleFrame is one frame of a FrameSample.
type SampleFrame struct {
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Camera    string    `json:"camera"`
	Time      time.Time `json:"time"`
}
