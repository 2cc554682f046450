package onnx

import "github.com/diplip/diplip/functions"

// OpenShared opens spec with all its lanes sharing one session, and OpenPerLane with a
// session per lane: the two ways BenchmarkLanes compares, whatever Open would choose.
func OpenShared(dir string, spec *functions.Spec, opts Options) (*Function, error) {
	return open(dir, spec, opts, 1)
}

func OpenPerLane(dir string, spec *functions.Spec, opts Options) (*Function, error) {
	return open(dir, spec, opts, max(1, opts.Lanes))
}
