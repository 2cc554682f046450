package api

import "time"

// Point is a point in source-image pixels.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// ZoneRequest is the body of POST /v1/zones: a counting line (two points) or area (three
// or more) on one camera of a stream. Tracking deployments count crossings of lines and
// entries into areas.
type ZoneRequest struct {
	Stream  string  `json:"stream"`
	Camera  string  `json:"camera"`
	Name    string  `json:"name"`
	Line    []Point `json:"line,omitempty"`
	Polygon []Point `json:"polygon,omitempty"`
}

// Zone is a recorded zone.
type Zone struct {
	Stream  string    `json:"stream"`
	Camera  string    `json:"camera"`
	Name    string    `json:"name"`
	Line    []Point   `json:"line,omitempty"`
	Polygon []Point   `json:"polygon,omitempty"`
	Created time.Time `json:"created"`
}
