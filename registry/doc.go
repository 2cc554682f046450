// Package registry builds, pushes, pulls and caches diplip function images, and holds the
// embedded OCI registry that `diplip up` serves under /v2/.
//
// It speaks the OCI distribution protocol through go-containerregistry, so any OCI
// registry works in production. It does not run models (see package functions).
package registry
