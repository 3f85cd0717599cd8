package orderers

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/protos/leadershippb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeLeadership answers Leader for channel "ch" with whatever set last said.
type fakeLeadership struct {
	leadershippb.UnimplementedLeadershipServer
	asked atomic.Int64

	mu    sync.Mutex
	leads bool
	term  uint64
}

func (f *fakeLeadership) set(leads bool, term uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leads, f.term = leads, term
}

func (f *fakeLeadership) Leader(_ context.Context, req *leadershippb.LeaderRequest) (*leadershippb.LeaderResponse, error) {
	f.asked.Add(1)
	if req.GetChannelId() != "ch" {
		return nil, status.Error(codes.NotFound, "no such channel")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &leadershippb.LeaderResponse{IsLeader: f.leads, Term: f.term}, nil
}

// leaderCluster starts n orderers serving Leadership, all roots in one slice.
func leaderCluster(t *testing.T, n int) ([]string, [][]byte, []*fakeLeadership) {
	t.Helper()
	var addrs []string
	var roots [][]byte
	var ls []*fakeLeadership
	for range n {
		l := &fakeLeadership{}
		a, r := startOrderer(t, &echoOrderer{leadership: l})
		addrs, roots, ls = append(addrs, a), append(roots, r), append(ls, l)
	}
	return addrs, roots, ls
}

func fastRefreshPool(t *testing.T) *Pool {
	t.Helper()
	p := NewPool(Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}, LeaderRefresh: 20 * time.Millisecond})
	t.Cleanup(func() { p.Close() })
	return p
}

// eventually calls Order with a copy of perm until it returns want.
func eventually(t *testing.T, p *Pool, addrs []string, roots [][]byte, perm, want []int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var got []int
	for time.Now().Before(deadline) {
		if got = p.Order("ch", addrs, roots, slices.Clone(perm)); slices.Equal(got, want) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("Order(%v) = %v, want %v", perm, got, want)
}

// TestOrderPutsLeaderFirst: the orderer that says it leads goes first, the
// others keep their order; a change of leader is followed; an unreachable
// orderer among them does not stop the others being asked.
func TestOrderPutsLeaderFirst(t *testing.T) {
	addrs, roots, ls := leaderCluster(t, 3)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrs = append(addrs, dead.Addr().String())
	dead.Close()
	ls[2].set(true, 3)
	p := fastRefreshPool(t)

	if got := p.Order("ch", addrs, roots, []int{3, 0, 1, 2}); !slices.Equal(got, []int{3, 0, 1, 2}) {
		t.Fatalf("before any answer Order = %v, want the order given", got)
	}
	eventually(t, p, addrs, roots, []int{3, 0, 1, 2}, []int{2, 3, 0, 1})
	eventually(t, p, addrs, roots, []int{2, 1, 0, 3}, []int{2, 1, 0, 3})

	ls[2].set(false, 4)
	ls[0].set(true, 4)
	eventually(t, p, addrs, roots, []int{3, 2, 1, 0}, []int{0, 3, 2, 1})

	// The leader takes the pool's Broadcasts like any orderer.
	resp, err := p.Broadcast(context.Background(), addrs[0], roots, env("to the leader"))
	if err != nil || resp.GetInfo() != "to the leader" {
		t.Fatalf("Broadcast to the leader = %v, %v", resp, err)
	}
}

// TestOrderHigherTermWins: a deposed leader that has not heard of the new
// term yet still says it leads; the higher term is believed.
func TestOrderHigherTermWins(t *testing.T) {
	addrs, roots, ls := leaderCluster(t, 3)
	ls[0].set(true, 5)
	ls[1].set(true, 6)
	p := fastRefreshPool(t)
	eventually(t, p, addrs, roots, []int{0, 1, 2}, []int{1, 0, 2})
}

// TestOrderWithoutLeadershipService: Fabric orderers answer Unimplemented and
// the order stays as given (random in the gateway), as does one where no
// orderer leads.
func TestOrderWithoutLeadershipService(t *testing.T) {
	var addrs []string
	var roots [][]byte
	for range 2 {
		a, r := startOrderer(t, &echoOrderer{})
		addrs, roots = append(addrs, a), append(roots, r)
	}
	if got := orderOnceAsked(t, fastRefreshPool(t), addrs, roots, []int{1, 0}); !slices.Equal(got, []int{1, 0}) {
		t.Fatalf("Order = %v, want the order given", got)
	}

	leaderless, lroots, ls := leaderCluster(t, 2)
	if got := orderOnceAsked(t, fastRefreshPool(t), leaderless, lroots, []int{1, 0}); !slices.Equal(got, []int{1, 0}) {
		t.Fatalf("Order with no leader = %v, want the order given", got)
	}
	if ls[0].asked.Load() == 0 || ls[1].asked.Load() == 0 {
		t.Fatalf("orderers asked %d and %d times, want both asked", ls[0].asked.Load(), ls[1].asked.Load())
	}
}

// orderOnceAsked starts a round of leader questions on channel "ch" with
// Order, waits for it to end and returns what Order makes of perm then.
func orderOnceAsked(t *testing.T, p *Pool, addrs []string, roots [][]byte, perm []int) []int {
	t.Helper()
	p.Order("ch", addrs, roots, slices.Clone(perm))
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		v := p.leaders["ch"]
		done := v != nil && !v.asking && !v.asked.IsZero()
		p.mu.Unlock()
		if done {
			return p.Order("ch", addrs, roots, slices.Clone(perm))
		}
		if time.Now().After(deadline) {
			t.Fatal("no round of leader questions ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestForgetLeader: after a failed submission to the leader, the gateway's
// next order is the one given until the orderers have been asked again; a
// failure at another orderer changes nothing. Answers are kept for
// LeaderRefresh.
func TestForgetLeader(t *testing.T) {
	addrs, roots, ls := leaderCluster(t, 2)
	ls[1].set(true, 2)
	p := NewPool(Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}, LeaderRefresh: time.Hour})
	t.Cleanup(func() { p.Close() })
	eventually(t, p, addrs, roots, []int{0, 1}, []int{1, 0})
	asked := ls[1].asked.Load()
	for range 10 {
		p.Order("ch", addrs, roots, []int{0, 1})
	}
	if n := ls[1].asked.Load(); n != asked {
		t.Fatalf("asked again %d times within LeaderRefresh", n-asked)
	}

	p.ForgetLeader("ch", addrs[0])
	if got := p.Order("ch", addrs, roots, []int{0, 1}); !slices.Equal(got, []int{1, 0}) {
		t.Fatalf("after a failure elsewhere Order = %v, want the leader first", got)
	}
	p.ForgetLeader("ch", addrs[1])
	if got := p.Order("ch", addrs, roots, []int{0, 1}); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("after the leader failed Order = %v, want the order given", got)
	}
	eventually(t, p, addrs, roots, []int{0, 1}, []int{1, 0})
}

// TestOrderAfterClose: a closed pool starts no round of questions, asks no
// one and leaves the order alone.
func TestOrderAfterClose(t *testing.T) {
	addrs, roots, ls := leaderCluster(t, 1)
	ls[0].set(true, 1)
	p := NewPool(Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	p.Close()
	if got := p.Order("ch", addrs, roots, []int{0}); !slices.Equal(got, []int{0}) {
		t.Fatalf("Order = %v", got)
	}
	p.mu.Lock()
	v := p.leaders["ch"]
	p.mu.Unlock()
	if v != nil {
		t.Fatalf("a closed pool started a round of leader questions: %+v", v)
	}
	if n := ls[0].asked.Load(); n != 0 {
		t.Fatalf("a closed pool asked %d times", n)
	}
}
