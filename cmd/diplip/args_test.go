package main

import (
	"slices"
	"testing"
)

func TestInterspersedFlags(t *testing.T) {
	app := newApp()
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{"flags after the argument", []string{"diplip", "fn", "build", "DIR", "-t", "REF", "--push"},
			[]string{"diplip", "fn", "build", "-t", "REF", "--push", "DIR"}},
		{"already in front", []string{"diplip", "stream", "create", "--partitions", "4", "lobby"},
			[]string{"diplip", "stream", "create", "--partitions", "4", "lobby"}},
		{"name=value", []string{"diplip", "stream", "create", "lobby", "--partitions=4"},
			[]string{"diplip", "stream", "create", "--partitions=4", "lobby"}},
		{"bool flag does not eat the argument", []string{"diplip", "fn", "build", "--push", "DIR", "-t", "R"},
			[]string{"diplip", "fn", "build", "--push", "-t", "R", "DIR"}},
		{"double dash", []string{"diplip", "fn", "rm", "x", "--", "-odd"},
			[]string{"diplip", "fn", "rm", "x", "--", "-odd"}},
		{"top-level help", []string{"diplip", "--help"}, []string{"diplip", "--help"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := interspersed(app, tc.in); !slices.Equal(got, tc.want) {
				t.Fatalf("interspersed(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
