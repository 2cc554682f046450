// Package ingest holds diplip's camera sources (HTTP push endpoints, RTSP/HTTP/file
// pullers), the frame record format, and the producer that writes frames to Kafka.
//
// It knows nothing about models.
package ingest
