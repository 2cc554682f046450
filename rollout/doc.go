// Package rollout carries out the life of a deployment: Plan turns a request and a
// function's spec into the deployment record with every default filled (deploy, shadow and
// replay alike); Service deploys and undeploys, starts and removes replays over a stream's
// retained frames, deploys and promotes shadows, compares a candidate's results with the
// primary's (DiffShadow, DiffReplay), creates and deletes streams with their topics, and
// deletes a removed camera's tracker state. Each change is checked whole before anything
// is made, and what a failed step made is removed again. ShadowGauges is the loop that
// keeps the diplip_shadow_* gauges current; its owner (package node) runs it.
//
// Errors are *Error values of a Kind (Invalid, NotFound, Conflict, Upstream,
// Unavailable), with messages that name what was wrong and the command that helps;
// anything else is a failure of the control plane.
//
// It knows nothing about HTTP (package gateway maps error kinds to statuses and records
// to the api types), runs no model, and decides no scaling (package scaler gives a
// deployment its runners). It reaches the control plane and Kafka through the small Store,
// Kafka and Producer interfaces that *controlplane.Store, *kafkaclient.Client and
// ingest.Producer satisfy.
package rollout
