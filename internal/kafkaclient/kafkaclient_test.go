package kafkaclient

import (
	"slices"
	"testing"
)

func TestParseBrokers(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		wantErr  bool
	}{
		{"one", "127.0.0.1:9092", []string{"127.0.0.1:9092"}, false},
		{"several with spaces", " a:1, b:2 ,c:3", []string{"a:1", "b:2", "c:3"}, false},
		{"ipv6", "[::1]:9092", []string{"[::1]:9092"}, false},
		{"empty", " , ", nil, true},
		{"no port", "kafka", nil, true},
		{"empty port", "kafka:", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBrokers(tc.in)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Fatalf("ParseBrokers(%q) = %v, %v; want %v (error: %v)", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestNewConfigValidates(t *testing.T) {
	if err := NewConfig("test").Validate(); err != nil {
		t.Fatalf("the shared config must be valid for sarama: %v", err)
	}
}
