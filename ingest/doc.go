// Package ingest holds diplip's camera sources (HTTP push endpoints, RTSP/HTTP/file
// pullers) and the producer that writes their frames to Kafka (the frame record itself is
// defined in internal/wire). A pushed frame's stream is resolved to its topic through a
// function the caller gives (the gateway gives a local view of the stream records, so a
// frame costs no control-plane round trip).
//
// It knows nothing about models.
package ingest
