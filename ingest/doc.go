// Package ingest holds diplip's camera sources (HTTP push endpoints, RTSP/HTTP/file
// pullers) and the producer that writes their frames to Kafka (the frame record itself is
// defined in internal/wire). A pushed frame's stream is resolved to its topic through a
// function the caller gives (the gateway gives a local view of the stream records, so a
// frame costs no control-plane round trip).
//
// The push endpoints bound what a client can make the gateway hold: a frame's bytes
// (MaxFrameBytes), frames being converted or waiting for Kafka (MaxInFlight, taken once
// the body is read), open MJPEG streams (MaxMJPEGStreams), a frame's declared pixels
// (MaxPixels) and, for a PNG it has to decode, its decoded size (MaxDecodedBytes). Beyond
// a limit the answer is 413 or 503 with Retry-After, never an unbounded queue.
//
// A pulled camera's URL goes to FFmpeg, which opens far more than cameras; SourcePolicy
// checks it first (network cameras, and video files only under chosen directories).
// Supervisor keeps the pulled cameras recorded in the control plane running: it adds and
// removes a camera with its record, resumes them all when it starts, reports each one's
// health, and stops them (storing what they buffered) when its context ends. Its errors
// are plain sentinels (ErrBadCamera, ErrCameraExists, ...) that the gateway maps to
// statuses; only the push endpoints answer HTTP themselves.
//
// It knows nothing about models.
package ingest
