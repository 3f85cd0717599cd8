// Package metrics owns the orderer's Prometheus metrics. One Metrics value is
// created per node with the registerer the binary passes in; its methods are
// the event sinks the chain and broadcast packages declare, and are safe for
// concurrent use.
package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the orderer's collectors.
type Metrics struct {
	broadcast *prometheus.CounterVec
	blocksCut *prometheus.CounterVec
	committed *prometheus.GaugeVec
	leader    *prometheus.GaugeVec
	term      *prometheus.GaugeVec
	leaderChg *prometheus.CounterVec
	propFail  *prometheus.CounterVec
	sendErr   *prometheus.CounterVec
	sendLat   *prometheus.HistogramVec
}

// New creates the collectors and registers them with reg (nil: not registered).
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		broadcast: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "orderer", Name: "broadcast_results_total",
			Help: "Broadcast envelopes answered, by channel and Fabric status.",
		}, []string{"channel", "status"}),
		blocksCut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "orderer", Name: "blocks_cut_total",
			Help: "Blocks cut by this node as leader, by channel and reason.",
		}, []string{"channel", "reason"}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "orderer", Name: "committed_block_number",
			Help: "Number of the last block committed to the channel's store.",
		}, []string{"channel"}),
		leader: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "orderer", Name: "is_leader",
			Help: "1 while this node leads the channel's raft group.",
		}, []string{"channel"}),
		term: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "orderer", Name: "raft_term",
			Help: "Current raft term of this node in the channel's raft group.",
		}, []string{"channel"}),
		leaderChg: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "orderer", Name: "leader_changes_total",
			Help: "Raft leader changes this node has seen in the channel.",
		}, []string{"channel"}),
		propFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "orderer", Name: "proposal_failures_total",
			Help: "Block proposals raft refused (e.g. leadership lost mid-proposal).",
		}, []string{"channel"}),
		sendErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "orderer", Name: "cluster_send_errors_total",
			Help: "Cluster messages not delivered to another consenter, by reason.",
		}, []string{"channel", "reason"}),
		sendLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "cairn", Subsystem: "orderer", Name: "cluster_send_duration_seconds",
			Help:    "Time to hand one message to another consenter's stream.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 9),
		}, []string{"channel"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.broadcast, m.blocksCut, m.committed, m.leader, m.term, m.leaderChg, m.propFail, m.sendErr, m.sendLat} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register orderer metrics: %w", err)
			}
		}
	}
	return m, nil
}

// BroadcastResult counts one answered envelope.
func (m *Metrics) BroadcastResult(channel, status string) {
	m.broadcast.WithLabelValues(channel, status).Inc()
}

// BlockCut counts a block cut by this node.
func (m *Metrics) BlockCut(channel, reason string) {
	m.blocksCut.WithLabelValues(channel, reason).Inc()
}

// BlockCommitted records the channel's newest block.
func (m *Metrics) BlockCommitted(channel string, number uint64) {
	m.committed.WithLabelValues(channel).Set(float64(number))
}

// Leader records whether this node leads the channel.
func (m *Metrics) Leader(channel string, isLeader bool) {
	v := 0.0
	if isLeader {
		v = 1
	}
	m.leader.WithLabelValues(channel).Set(v)
}

// RaftTerm records the node's current raft term in the channel.
func (m *Metrics) RaftTerm(channel string, term uint64) {
	m.term.WithLabelValues(channel).Set(float64(term))
}

// LeaderChanged counts a new raft leader seen in the channel.
func (m *Metrics) LeaderChanged(channel string) { m.leaderChg.WithLabelValues(channel).Inc() }

// ProposalFailed counts a block proposal raft refused.
func (m *Metrics) ProposalFailed(channel string) { m.propFail.WithLabelValues(channel).Inc() }

// SendError counts an undelivered cluster message.
func (m *Metrics) SendError(channel, reason string) { m.sendErr.WithLabelValues(channel, reason).Inc() }

// SendLatency records the time to hand a message to a consenter's stream.
func (m *Metrics) SendLatency(channel string, d time.Duration) {
	m.sendLat.WithLabelValues(channel).Observe(d.Seconds())
}

// Forget drops a removed channel's series.
func (m *Metrics) Forget(channel string) {
	m.committed.DeleteLabelValues(channel)
	m.leader.DeleteLabelValues(channel)
	m.term.DeleteLabelValues(channel)
	m.leaderChg.DeleteLabelValues(channel)
	m.propFail.DeleteLabelValues(channel)
	m.sendLat.DeleteLabelValues(channel)
	m.sendErr.DeletePartialMatch(prometheus.Labels{"channel": channel})
	m.blocksCut.DeletePartialMatch(prometheus.Labels{"channel": channel})
	m.broadcast.DeletePartialMatch(prometheus.Labels{"channel": channel})
}
