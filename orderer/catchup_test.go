package orderer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/orderer/internal/participation"
)

// logWatch is a slog handler that counts messages, so a test can tell which
// recovery path a node took.
type logWatch struct {
	mu   sync.Mutex
	msgs map[string]int
	all  []string // every record, for a failure report
}

func newLogWatch() *logWatch { return &logWatch{msgs: map[string]int{}} }

func (w *logWatch) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

// dumpOnFailure logs everything the watched nodes logged if t failed.
func dumpOnFailure(t *testing.T, ws ...*logWatch) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, w := range ws {
			w.mu.Lock()
			for _, l := range w.all {
				t.Logf("node %d: %s", i, l)
			}
			w.mu.Unlock()
		}
	})
}
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *logWatch) WithGroup(string) slog.Handler      { return w }
func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "index" || a.Key == "block" || a.Key == "to" {
			msg += " " + a.String()
		}
		return true
	})
	w.msgs[msg]++
	line := r.Time.Format("15:04:05.000") + " " + r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	w.all = append(w.all, line)
	w.mu.Unlock()
	return nil
}

// count is how many messages began with prefix.
func (w *logWatch) count(prefix string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for m, c := range w.msgs {
		if strings.HasPrefix(m, prefix) {
			n += c
		}
	}
	return n
}

const (
	msgCatchUp  = "behind a raft snapshot; pulling blocks from other orderers"
	msgLostLog  = "follower rejected entries it had acknowledged; its raft data was lost"
	msgCaughtUp = "caught up with the snapshot"
)

func seq(prefix string, n int) []string {
	var vs []string
	for i := range n {
		vs = append(vs, fmt.Sprintf("%s-%d", prefix, i))
	}
	return vs
}

func (cf *clusterFixture) joinAll(t *testing.T) {
	t.Helper()
	admin := cf.adminClient(t, true)
	for i, n := range cf.nodes {
		if n == nil {
			continue
		}
		if resp, body := join(t, admin, n.o.Addrs().Admin, cf.genesis); resp.StatusCode != http.StatusCreated {
			t.Fatalf("join node %d: %d %s", i, resp.StatusCode, body)
		}
	}
}

func (cf *clusterFixture) stopAll(t *testing.T) {
	for _, n := range cf.nodes {
		if n != nil {
			n.stop(t)
		}
	}
}

// TestSnapshotCatchUp stops a follower while the others order enough to take
// several raft snapshots; restarted, it is sent a snapshot, pulls the blocks it
// missed from the other orderers and ends with byte-identical blocks.
func TestSnapshotCatchUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several orderers")
	}
	cf := newClusterFixtureWith(t, 3, false, clusterOptions{channel: func(n *netconfig.Network) {
		n.Channel.Raft.SnapshotIntervalSize = 8 << 10
	}})
	ws := []*logWatch{newLogWatch(), newLogWatch(), newLogWatch()}
	dumpOnFailure(t, ws...)
	for i := range cf.cfgs {
		// Messages queued for a stopped node are delivered when it comes
		// back; a short queue makes it miss entries, so it needs a snapshot.
		cf.cfgs[i].Cluster.SendBufferSize = 8
		cf.cfgs[i].Logger = slog.New(ws[i])
	}
	for i, cfg := range cf.cfgs {
		cf.nodes[i] = start(t, cfg)
	}
	defer cf.stopAll(t)
	cf.joinAll(t)
	victim := (cf.leader(t, 10*time.Second) + 1) % 3
	watch := ws[victim]

	want := seq("before", 20)
	cf.broadcast(t, want)
	cf.converge(t, want)

	cf.nodes[victim].stop(t)
	cf.nodes[victim] = nil
	t.Log("follower stopped")
	missed := seq("missed", 150)
	want = append(want, missed...)
	cf.broadcast(t, missed)
	cf.converge(t, want)

	t.Log("restarting the follower")
	cf.nodes[victim] = start(t, cf.cfgs[victim])
	after := seq("after", 20)
	want = append(want, after...)
	cf.broadcast(t, after)
	cf.converge(t, want)
	if watch.count(msgCatchUp) == 0 || watch.count(msgCaughtUp) == 0 {
		t.Errorf("restarted node did not catch up from a snapshot (%q: %d, %q: %d)", msgCatchUp, watch.count(msgCatchUp), msgCaughtUp, watch.count(msgCaughtUp))
	}
}

// TestWipedFollowerRejoins deletes a follower's data directory; restarted and
// joined again with the genesis block through the participation API, it
// rebuilds byte-identical blocks. Snapshots are rare (the default interval),
// so the leader has to notice the follower lost its log and compact its own
// to send it a snapshot.
func TestWipedFollowerRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several orderers")
	}
	cf := newClusterFixture(t, 3, false)
	for i, cfg := range cf.cfgs {
		cf.nodes[i] = start(t, cfg)
	}
	defer cf.stopAll(t)
	cf.joinAll(t)
	lead := cf.leader(t, 10*time.Second)
	victim := (lead + 1) % 3

	want := seq("before", 60)
	cf.broadcast(t, want)
	cf.converge(t, want)

	cf.nodes[victim].stop(t)
	cf.nodes[victim] = nil
	dir := cf.cfgs[victim].DataDir
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	during := seq("during", 30)
	want = append(want, during...)
	cf.broadcast(t, during)

	n := start(t, cf.cfgs[victim])
	cf.nodes[victim] = n
	admin := cf.adminClient(t, true)
	resp, body := join(t, admin, n.o.Addrs().Admin, cf.genesis)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("re-join: %d %s", resp.StatusCode, body)
	}
	after := seq("after", 20)
	want = append(want, after...)
	cf.broadcast(t, after)
	cf.converge(t, want)
}

// TestFollowerReplicates joins an orderer that is not a consenter with the
// genesis block: it reports the follower relation and pulls every block from
// the consenters, byte-identical.
func TestFollowerReplicates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several orderers")
	}
	cf := newClusterFixtureWith(t, 4, false, clusterOptions{followers: 1})
	for i := range 3 {
		cf.nodes[i] = start(t, cf.cfgs[i])
	}
	defer cf.stopAll(t)
	cf.joinAll(t)
	cf.leader(t, 10*time.Second)

	follower := start(t, cf.cfgs[3])
	cf.nodes[3] = nil // not yet: leader and broadcast look at consenters only
	admin := cf.adminClient(t, true)
	resp, body := join(t, admin, follower.o.Addrs().Admin, cf.genesis)
	if resp.StatusCode != http.StatusCreated {
		follower.stop(t)
		t.Fatalf("join follower: %d %s", resp.StatusCode, body)
	}
	var info participation.ChannelInfo
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	if info.ConsensusRelation != "follower" || info.Status != "active" {
		t.Errorf("follower joined as %q/%q", info.ConsensusRelation, info.Status)
	}
	want := seq("tx", 40)
	cf.broadcast(t, want)
	cf.nodes[3] = follower
	cf.converge(t, want)
	more := seq("more", 15)
	want = append(want, more...)
	cf.nodes[3] = nil
	cf.broadcast(t, more)
	cf.nodes[3] = follower
	cf.converge(t, want)
}
