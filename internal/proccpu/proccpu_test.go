//go:build unix

package proccpu

import (
	"crypto/sha256"
	"testing"
	"time"
)

// TestSelfCountsThisProcessesWork: busy work shows up in Self. The loop stops
// at 10 ms of CPU rather than after a fixed wall time, so a machine busy with
// other tests only makes it take longer.
func TestSelfCountsThisProcessesWork(t *testing.T) {
	before := Self()
	if before <= 0 {
		t.Fatalf("CPU time so far %v, want > 0", before)
	}
	sum := sha256.Sum256(nil)
	deadline := time.Now().Add(10 * time.Second)
	for Self()-before < 10*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("10 s of busy work counted as %v of CPU", Self()-before)
		}
		for range 1000 {
			sum = sha256.Sum256(sum[:])
		}
	}
}
