package orderers

import (
	"context"
	"time"

	"github.com/cairn-ledger/cairn/protos/leadershippb"
)

// Leader discovery. A raft follower that receives an envelope forwards it to
// the leader, which costs the follower a second message and both nodes the
// work of carrying it; with three orderers and submissions spread at random,
// two in three envelopes took that detour. Cairn orderers answer
// Leadership.Leader, so the pool asks each orderer of a channel, in the
// background, whether it leads, and Order puts the one that does first.
// Fabric orderers answer Unimplemented and the order stays as given.

// DefaultLeaderRefresh is Config.LeaderRefresh when it is zero.
const DefaultLeaderRefresh = 2 * time.Second

// leaderAskTimeout bounds one Leader call: an orderer slow to answer is not a
// leader worth preferring.
const leaderAskTimeout = time.Second

// leaderView is what the pool knows of one channel's raft leader.
type leaderView struct {
	address string    // the endpoint that last said it leads; "" if none did
	asked   time.Time // when the last round of questions ended; zero: never
	asking  bool      // a round is under way
}

// Order moves, in place, the orderer that last said it leads channel to the
// front of order (a permutation of indexes into addresses), the others
// keeping their relative order, and returns order. When what the pool knows
// is older than Config.LeaderRefresh, it asks the orderers again in the
// background; the answer serves later calls, never this one, so a submission
// never waits for it. roots are the channel's orderer TLS roots, as for
// Broadcast.
func (p *Pool) Order(channel string, addresses []string, roots [][]byte, order []int) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return order
	}
	v := p.leaders[channel]
	if v == nil {
		v = &leaderView{}
		p.leaders[channel] = v
	}
	if !v.asking && time.Since(v.asked) >= p.cfg.LeaderRefresh {
		v.asking = true
		asked := append([]string(nil), addresses...)
		p.askers.Go(func() { p.askLeader(channel, asked, roots) })
	}
	if v.address == "" {
		return order
	}
	for pos, i := range order {
		if addresses[i] == v.address {
			copy(order[1:pos+1], order[:pos])
			order[0] = i
			break
		}
	}
	return order
}

// ForgetLeader drops address as channel's known leader, if it is, so that the
// next Order asks again: the gateway calls it when a submission to address
// failed, since the leader may have changed or gone.
func (p *Pool) ForgetLeader(channel, address string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v := p.leaders[channel]; v != nil && v.address == address {
		v.address = ""
		v.asked = time.Time{}
	}
}

// askLeader asks every address whether it leads channel and records the one
// that does; of two that claim to (a deposed leader may not know yet), the
// one with the higher term.
func (p *Pool) askLeader(channel string, addresses []string, roots [][]byte) {
	var leader string
	var term uint64
	for _, a := range addresses {
		resp, err := p.leader(channel, a, roots)
		if err != nil || !resp.GetIsLeader() {
			continue
		}
		if leader == "" || resp.GetTerm() > term {
			leader, term = a, resp.GetTerm()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if v := p.leaders[channel]; v != nil {
		v.address, v.asked, v.asking = leader, time.Now(), false
	}
}

// leader makes one Leader call to address over the pool's connection to it.
func (p *Pool) leader(channel, address string, roots [][]byte) (*leadershippb.LeaderResponse, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	conn, err := p.connLocked(poolKey(address, roots), roots)
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(p.ctx, leaderAskTimeout)
	defer cancel()
	return leadershippb.NewLeadershipClient(conn).Leader(ctx, &leadershippb.LeaderRequest{ChannelId: channel})
}
