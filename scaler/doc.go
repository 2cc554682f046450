// Package scaler decides how many runners each deployment needs and makes it so.
//
// The decision is a pure function, Decide: observations in (lag per partition, the
// runners' heartbeats, the measured capacity of one runner), desired replicas and actions
// out; it is table-tested without Kafka or NATS. Scaler is the thin loop around it: it
// measures (heartbeats on NATS, lag through the process's Kafka client), decides and acts
// (activation requests to runners, launches through a Driver). LocalDriver is the Driver
// that starts `diplip runner` processes on this machine.
//
// It knows nothing of HTTP; the gateway reads Runners and Status through a small interface.
package scaler
