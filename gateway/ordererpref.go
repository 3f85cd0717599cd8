package gateway

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// ordererPreference orders a channel's orderers for a submission. Raft needs
// one orderer to accept a transaction and any of them will, but a follower
// forwards what it accepts to the leader: more work on two orderers and a
// round trip more before the answer. Fabric's gateway tries orderers in a
// random order; this one tries first the orderer that answered fastest lately
// (under load, the leader, whose answers need no forward) and, one submission
// in exploreEvery, keeps the random order, so that the others' figures stay
// fresh and a new leader is found after an election. An orderer that fails
// counts as slow until it answers well again; the others are still tried in
// turn after it, as before.
type ordererPreference struct {
	mu    sync.Mutex
	calls uint64
	ewma  map[string]time.Duration // smoothed Broadcast answer time by address
}

const (
	// exploreEvery is how often the random order is kept as it is.
	exploreEvery = 8
	// failedLatency is what a failed attempt counts as.
	failedLatency = time.Second
)

func newOrdererPreference() *ordererPreference {
	return &ordererPreference{ewma: map[string]time.Duration{}}
}

// order returns the order in which to try addresses: perm (a random
// permutation of their indices) sorted by answer time, unknown orderers first
// so that they are measured, ties in perm's order.
func (o *ordererPreference) order(addresses []string, perm []int) []int {
	lat := make([]time.Duration, len(addresses))
	o.mu.Lock()
	o.calls++
	explore := o.calls%exploreEvery == 0
	for i, a := range addresses {
		lat[i] = o.ewma[a]
	}
	o.mu.Unlock()
	if explore {
		return perm
	}
	slices.SortStableFunc(perm, func(a, b int) int { return cmp.Compare(lat[a], lat[b]) })
	return perm
}

// observe records how long address took to answer, or that it failed.
func (o *ordererPreference) observe(address string, took time.Duration, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	old, seen := o.ewma[address]
	switch {
	case !ok:
		o.ewma[address] = max(failedLatency, 2*old)
	case !seen || old >= failedLatency:
		o.ewma[address] = took // first answer, or recovering: start afresh
	default:
		o.ewma[address] = old + (took-old)/8
	}
}
