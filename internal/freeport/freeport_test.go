package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPickBelowEphemeralRange(t *testing.T) {
	taken := map[int]bool{}
	for range 20 {
		p, err := Pick("127.0.0.1", taken)
		if err != nil {
			t.Fatal(err)
		}
		if p < 10000 || p >= ephemeralLow() {
			t.Fatalf("port %d outside [10000, %d)", p, ephemeralLow())
		}
		if !taken[p] {
			t.Fatalf("port %d not recorded as taken", p)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
	if len(taken) != 20 {
		t.Fatalf("%d distinct ports, want 20", len(taken))
	}
}
