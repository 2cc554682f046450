package wire

import "testing"

func TestSummarize(t *testing.T) {
	d := func(l string) Detection { return Detection{Label: l} }
	if got := Summarize([]Detection{d("person"), d("car"), d("person"), d("truck"), {ClassID: 7}}); got != "2 person, 1 car, 1 class 7, 1 truck" {
		t.Fatalf("Summarize = %q", got)
	}
	if got := Summarize(nil); got != "nothing" {
		t.Fatalf("Summarize(nil) = %q", got)
	}
}
