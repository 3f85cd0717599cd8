package gateway

import (
	"slices"
	"testing"
	"time"
)

func identity(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return p
}

func TestOrdererPreference(t *testing.T) {
	o := newOrdererPreference()
	addrs := []string{"o0", "o1", "o2"}
	order := func() []int { return o.order(addrs, identity(len(addrs))) }

	if got := order(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("nothing measured: order %v, want the random order unchanged", got)
	}
	o.observe("o0", 5*time.Millisecond, true) // a follower: forwards, slower
	o.observe("o1", 4*time.Millisecond, true)
	if got := order(); !slices.Equal(got, []int{2, 1, 0}) {
		t.Fatalf("o2 unmeasured, o1 faster than o0: order %v, want [2 1 0]", got)
	}
	o.observe("o2", time.Millisecond, true) // the leader
	if got := order(); !slices.Equal(got, []int{2, 1, 0}) {
		t.Fatalf("order %v, want the leader first", got)
	}

	// The leader fails: it goes last until it answers well again.
	o.observe("o2", 0, false)
	if got := order(); !slices.Equal(got, []int{1, 0, 2}) {
		t.Fatalf("after a failure: order %v, want [1 0 2]", got)
	}
	o.observe("o2", time.Millisecond, true)
	if got := order(); got[0] != 2 {
		t.Fatalf("after recovering: order %v, want o2 first", got)
	}

	// One call in exploreEvery keeps the random order, so that the slower
	// orderers are measured again (after an election, one is the leader).
	explored := 0
	for range 4 * exploreEvery {
		if slices.Equal(order(), []int{0, 1, 2}) {
			explored++
		}
	}
	if explored != 4 {
		t.Fatalf("%d calls of %d kept the random order, want 4", explored, 4*exploreEvery)
	}
}

func TestOrdererPreferenceSmoothsAnswers(t *testing.T) {
	o := newOrdererPreference()
	o.observe("o0", 8*time.Millisecond, true)
	o.observe("o0", 0, true)
	if got := o.ewma["o0"]; got != 7*time.Millisecond {
		t.Fatalf("ewma %v, want 7ms (one eighth of the way)", got)
	}
	o.observe("o0", 0, false)
	o.observe("o0", 0, false)
	if got := o.ewma["o0"]; got != 2*failedLatency {
		t.Fatalf("after two failures %v, want %v", got, 2*failedLatency)
	}
}
