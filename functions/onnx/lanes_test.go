package onnx_test

import (
	"testing"

	"github.com/diplip/diplip/functions/onnx"
)

func TestDefaultLanes(t *testing.T) {
	for cpus, want := range map[int]int{0: 1, 1: 1, 2: 2, 16: 16} {
		if l := onnx.DefaultLanes(cpus); l != want {
			t.Errorf("DefaultLanes(%d) = %d, want %d", cpus, l, want)
		}
	}
}
