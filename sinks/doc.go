// Package sinks turns a stream's results into events (zone crossings, entries, exits and
// detections) and delivers them to a target of the user's: a webhook (an HTTP POST of
// JSON, signed) or an MQTT broker (QoS 1 events, retained counts), at least once.
//
// Each sink is a Kafka consumer group of its own on the stream's results topic (read
// committed, kafkaclient's config) that marks a result's offset only once the target
// accepted every event made of it (HTTP 2xx, MQTT PUBACK) or the event went to the sink's
// dead-letter topic. A partition's results are handled one after another, so a camera's
// events (a camera keeps one partition) go out in order. Retries back off exponentially
// with jitter; a 4xx other than 408 and 429 is permanent. A slow or dead target holds only
// its own sink: runners write results without waiting for anyone, and every sink has its
// own group and goroutines.
//
// Manager runs the sinks recorded in the control plane and answers the gateway's calls
// (add, list, remove, test, dead letters, replay) in the API's terms. The package knows
// nothing of HTTP routes, models or runners.
package sinks
