// Package bench holds the load generator and the measurement runs that reproduce and
// extend the DiPLIP paper's evaluation: the direct in-process loop as the machine's limit,
// the pipeline at a fraction of it, cold start, scaling with a simulated accelerator, and
// ingest against Kafka's own producer performance tool. `diplip bench` runs it; no other
// part of the product imports it.
package bench
