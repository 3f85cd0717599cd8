package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestEveryEventReachesItsSeries checks each event the chain, cluster and
// broadcast report lands in the series operators chart, and Forget drops a
// channel's series.
func TestEveryEventReachesItsSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.BroadcastResult("ch", "SUCCESS")
	m.BlockCut("ch", "size")
	m.BlockCommitted("ch", 7)
	m.Leader("ch", true)
	m.RaftTerm("ch", 3)
	m.LeaderChanged("ch")
	m.LeaderChanged("ch")
	m.ProposalFailed("ch")
	m.SendError("ch", "stream")
	m.SendLatency("ch", 2*time.Millisecond)

	want := map[string]float64{
		"cairn_orderer_broadcast_results_total":       1,
		"cairn_orderer_blocks_cut_total":              1,
		"cairn_orderer_committed_block_number":        7,
		"cairn_orderer_is_leader":                     1,
		"cairn_orderer_raft_term":                     3,
		"cairn_orderer_leader_changes_total":          2,
		"cairn_orderer_proposal_failures_total":       1,
		"cairn_orderer_cluster_send_errors_total":     1,
		"cairn_orderer_cluster_send_duration_seconds": 1, // sample count
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, s := range f.Metric {
			switch {
			case s.Counter != nil:
				got[f.GetName()] += s.Counter.GetValue()
			case s.Gauge != nil:
				got[f.GetName()] += s.Gauge.GetValue()
			case s.Histogram != nil:
				got[f.GetName()] += float64(s.Histogram.GetSampleCount())
			}
		}
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
	m.Forget("ch")
	families, _ = reg.Gather()
	for _, f := range families {
		if len(f.Metric) > 0 {
			t.Errorf("%s still has series after Forget", f.GetName())
		}
	}
}
