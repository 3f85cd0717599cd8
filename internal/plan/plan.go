package plan

import (
	"bytes"
	"sort"
	"sync"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
)

// Plan walks the layouts of an endorsement plan as Fabric's gateway does:
// Endorsers hands out the peers of the next viable layout, Endorsed records
// a successful endorsement in every layout needing its group, Retry offers
// the next peer of a failed peer's group (and abandons the layouts needing a
// group that has run out), and Completed reports the endorsements of the
// first layout satisfied. A peer belongs to one group: the first, in group
// order, that lists it.
type Plan struct {
	mu        sync.Mutex
	layouts   []*state // nil once abandoned
	next      int
	groups    map[string][]Peer // peers not yet handed out, per group
	groupOf   map[string]string // peer address → group
	payload   []byte
	completed *state
}

type state struct {
	required  map[string]int
	responses []*pb.ProposalResponse
}

// New returns a plan over layouts (tried in order) and the peers of their
// groups (tried in order). Layouts needing more peers of a group than it has
// are dropped.
func New(layouts []Layout, groups map[string][]Peer) *Plan {
	p := &Plan{groups: map[string][]Peer{}, groupOf: map[string]string{}}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		p.groups[g] = append([]Peer(nil), groups[g]...)
		for _, peer := range groups[g] {
			if _, ok := p.groupOf[peer.Address]; !ok {
				p.groupOf[peer.Address] = g
			}
		}
	}
	for _, l := range layouts {
		viable := true
		req := map[string]int{}
		for g, n := range l {
			if n > len(groups[g]) {
				viable = false
				break
			}
			req[g] = n
		}
		if viable && len(req) > 0 {
			p.layouts = append(p.layouts, &state{required: req})
		}
	}
	return p
}

// Prefer moves the layouts that use peer's group to the front, keeping their
// order otherwise: the gateway's first endorsement then counts.
func (p *Plan) Prefer(peer Peer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.groupOf[peer.Address]
	if !ok {
		return
	}
	var first, rest []*state
	for _, l := range p.layouts {
		if _, uses := l.required[g]; uses {
			first = append(first, l)
		} else {
			rest = append(rest, l)
		}
	}
	p.layouts = append(first, rest...)
}

// Viable reports whether any layout is left.
func (p *Plan) Viable() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.layouts[p.next:] {
		if l != nil {
			return true
		}
	}
	return false
}

// Endorsers returns the peers to ask for the next viable layout — as many
// of each of its groups as it still needs — or nil when no layout is left.
func (p *Plan) Endorsers() []Peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ; p.next < len(p.layouts); p.next++ {
		l := p.layouts[p.next]
		if l == nil {
			continue
		}
		short := false
		for g, n := range l.required {
			if n > len(p.groups[g]) {
				short = true
				break
			}
		}
		if short {
			p.layouts[p.next] = nil
			continue
		}
		var out []Peer
		for _, g := range sortedGroups(l.required) {
			n := l.required[g]
			out = append(out, p.groups[g][:n]...)
			p.groups[g] = p.groups[g][n:]
		}
		return out
	}
	return nil
}

// Endorsed records a successful response from peer. It returns false, and
// records nothing, if the response's payload differs from the payloads
// received before: the peer computed another result.
func (p *Plan) Endorsed(peer Peer, resp *pb.ProposalResponse) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, inGroup := p.groupOf[peer.Address]
	if inGroup {
		// It may not have been handed out by this plan (the first endorser).
		for i, e := range p.groups[g] {
			if e.Address == peer.Address {
				p.groups[g] = append(p.groups[g][:i:i], p.groups[g][i+1:]...)
				break
			}
		}
	}
	if p.payload == nil {
		p.payload = resp.GetPayload()
	} else if !bytes.Equal(p.payload, resp.GetPayload()) {
		return false
	}
	if !inGroup || p.completed != nil {
		return true
	}
	for _, l := range p.layouts[p.next:] {
		if l == nil {
			continue
		}
		n, ok := l.required[g]
		if !ok {
			continue
		}
		l.responses = append(l.responses, resp)
		if n > 1 {
			l.required[g] = n - 1
			continue
		}
		delete(l.required, g)
		if len(l.required) == 0 {
			p.completed = l
			return true
		}
	}
	return true
}

// Retry returns the next peer of the failed peer's group to ask instead, or
// false when the group has no more peers; every layout needing the group is
// then abandoned.
func (p *Plan) Retry(failed Peer) (Peer, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.groupOf[failed.Address]
	if !ok {
		return Peer{}, false
	}
	if len(p.groups[g]) > 0 {
		next := p.groups[g][0]
		p.groups[g] = p.groups[g][1:]
		return next, true
	}
	for i := p.next; i < len(p.layouts); i++ {
		if l := p.layouts[i]; l != nil {
			if _, uses := l.required[g]; uses {
				p.layouts[i] = nil
			}
		}
	}
	return Peer{}, false
}

// Completed returns the responses of the layout satisfied, one per endorser,
// or nil if none is.
func (p *Plan) Completed() []*pb.ProposalResponse {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.completed == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []*pb.ProposalResponse
	for _, r := range p.completed.responses {
		key := string(r.GetEndorsement().GetEndorser())
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, r)
	}
	return out
}

func sortedGroups(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
