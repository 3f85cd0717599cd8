package localnet_test

// Process-level chaos tests of the orderer cluster: real cairn processes are
// SIGKILLed, SIGSTOPped and wiped while clients broadcast, and every orderer
// must end up holding the same blocks, each envelope ordered at most once.
//
// Randomness is confined to the choice of victims; the seed is logged and can
// be fixed with CAIRN_CHAOS_SEED to replay a run.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/deliverclient"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// chaosPayloadSize is the size of each load envelope's transaction payload.
const chaosPayloadSize = 1 << 10

// chaosSendPause is the pause between two envelopes of one load stream, which
// keeps the load steady (tens of envelopes per second per stream) rather than
// saturating the two shared cores.
const chaosSendPause = 15 * time.Millisecond

// TestChaosLeaderKill3 SIGKILLs the raft leader of a three-orderer cluster
// under Broadcast load, then random orderers, ten times; after each kill a
// new leader must be elected within three election timeouts and Broadcast
// must work again, and the restarted victim must catch up. At the end every
// orderer must hold byte-identical blocks, each envelope at most once.
func TestChaosLeaderKill3(t *testing.T) {
	began := time.Now()
	c := startChaos(t, 3, nil)
	rng := chaosRand(t)
	ld := c.startLoad(t)

	c.waitHeightsAdvance(t, c.orderers(), 3, 15*time.Second)
	bound := 3*c.electionTimeout + time.Second // slack: metrics polling and two busy cores
	var elections []time.Duration
	const cycles = 10
	for cycle := 0; cycle < cycles; cycle++ {
		view := c.waitOneLeader(t, c.orderers(), 10*time.Second)
		leader, term := view.leader()
		victim := leader
		if cycle >= cycles/2 {
			all := c.orderers()
			victim = all[rng.IntN(len(all))]
		}
		t.Logf("cycle %d: leader %s (term %d), killing %s", cycle, leader, term, victim)
		killedAt := time.Now()
		ld.noteKill(victim, victim == leader)
		if err := c.n.Kill(victim, true); err != nil {
			t.Fatalf("kill %s: %v", victim, err)
		}
		live := except(c.orderers(), victim)
		if victim == leader {
			v, took := c.waitLeader(t, live, bound, killedAt, func(name string, st localnet.RaftState) bool {
				return name != victim && st.Term > term
			})
			nl, nt := v.leader()
			t.Logf("cycle %d: %s leads in term %d, %s after the kill", cycle, nl, nt, took.Round(time.Millisecond))
			elections = append(elections, took)
		} else {
			v, _ := c.waitLeader(t, live, bound, killedAt, func(string, localnet.RaftState) bool { return true })
			nl, nt := v.leader()
			t.Logf("cycle %d: follower killed; %s leads in term %d", cycle, nl, nt)
		}
		c.mustBroadcast(t, live, 10*time.Second)
		t.Logf("cycle %d: broadcast succeeds %s after the kill", cycle, time.Since(killedAt).Round(time.Millisecond))

		target := c.maxHeight(t, live)
		c.restart(t, victim)
		took := c.waitConverged(t, c.orderers(), target, 20*time.Second)
		t.Logf("cycle %d: %s restarted and caught up to the others in %s", cycle, victim, took.Round(time.Millisecond))
	}
	ld.stop(t)
	c.checkLedgers(t, ld)
	t.Logf("election times after leader kills: %v (bound %s)", roundAll(elections), bound)
	t.Logf("whole test: %s", time.Since(began).Round(time.Millisecond))
}

// TestChaosMinority5 loses a minority of a five-orderer cluster twice: two
// orderers SIGKILLed at once, then two (the leader among them) frozen with
// SIGSTOP. Each time the three others keep ordering; the minority rejoins and
// every orderer ends with byte-identical blocks.
func TestChaosMinority5(t *testing.T) {
	began := time.Now()
	c := startChaos(t, 5, nil)
	rng := chaosRand(t)
	ld := c.startLoad(t)
	c.waitHeightsAdvance(t, c.orderers(), 3, 15*time.Second)

	// Two killed at once.
	all := c.orderers()
	perm := rng.Perm(len(all))
	killed := []string{all[perm[0]], all[perm[1]]}
	view := c.waitOneLeader(t, all, 10*time.Second)
	leader, term := view.leader()
	t.Logf("leader %s (term %d); SIGKILL %v", leader, term, killed)
	killedAt := time.Now()
	for _, v := range killed {
		ld.noteKill(v, v == leader)
		if err := c.n.Kill(v, true); err != nil {
			t.Fatalf("kill %s: %v", v, err)
		}
	}
	live := except(all, killed...)
	v, took := c.waitLeader(t, live, 3*c.electionTimeout+time.Second, killedAt, func(string, localnet.RaftState) bool { return true })
	nl, nt := v.leader()
	t.Logf("majority leader %s (term %d), %s after the kill", nl, nt, took.Round(time.Millisecond))
	c.mustBroadcast(t, live, 10*time.Second)
	c.waitHeightsAdvance(t, live, 3, 15*time.Second)
	target := c.maxHeight(t, live)
	for _, v := range killed {
		c.restart(t, v)
	}
	took = c.waitConverged(t, all, target, 30*time.Second)
	t.Logf("%v restarted and caught up in %s", killed, took.Round(time.Millisecond))

	// Two frozen, the leader among them.
	view = c.waitOneLeader(t, all, 10*time.Second)
	leader, term = view.leader()
	followers := except(all, leader)
	frozen := []string{leader, followers[rng.IntN(len(followers))]}
	t.Logf("leader %s (term %d); SIGSTOP %v", leader, term, frozen)
	frozenAt := time.Now()
	for _, name := range frozen {
		ld.noteKill(name, name == leader)
		c.signal(t, name, syscall.SIGSTOP)
	}
	t.Cleanup(func() { // never leave a stopped process behind
		for _, name := range frozen {
			_ = syscall.Kill(c.pid(t, name), syscall.SIGCONT)
		}
	})
	live = except(all, frozen...)
	v, took = c.waitLeader(t, live, 3*c.electionTimeout+time.Second, frozenAt, func(name string, st localnet.RaftState) bool {
		return st.Term > term
	})
	nl, nt = v.leader()
	t.Logf("majority leader %s (term %d), %s after the freeze", nl, nt, took.Round(time.Millisecond))
	// A frozen process writes nothing: snapshot its data folder now and after
	// the majority has ordered more blocks.
	time.Sleep(200 * time.Millisecond)
	before := map[string]string{}
	for _, name := range frozen {
		before[name] = c.dataFingerprint(t, name)
	}
	c.mustBroadcast(t, live, 10*time.Second)
	grew := c.waitHeightsAdvance(t, live, 5, 15*time.Second)
	for _, name := range frozen {
		if after := c.dataFingerprint(t, name); after != before[name] {
			t.Fatalf("frozen %s changed its data folder while stopped:\nbefore %s\nafter  %s", name, before[name], after)
		}
	}
	t.Logf("majority ordered %d blocks while %v were frozen; their data folders did not change", grew, frozen)
	target = c.maxHeight(t, live)
	for _, name := range frozen {
		c.signal(t, name, syscall.SIGCONT)
	}
	took = c.waitConverged(t, all, target, 30*time.Second)
	t.Logf("%v resumed and caught up in %s", frozen, took.Round(time.Millisecond))
	c.waitOneLeader(t, all, 10*time.Second)

	ld.stop(t)
	c.checkLedgers(t, ld)
	t.Logf("whole test: %s", time.Since(began).Round(time.Millisecond))
}

// TestChaosWipedFollower stops a follower of a three-orderer cluster, deletes
// its data folder, starts it empty and joins it to the channel again with the
// genesis block: it must rebuild the chain, identical to the others'. In
// "log" the leader still holds the whole raft log; in "snapshot" the log is
// compacted every few blocks (small SnapshotIntervalSize), so the node must
// catch up from a snapshot by pulling blocks from the other orderers.
func TestChaosWipedFollower(t *testing.T) {
	for _, tc := range []struct {
		name         string
		snapInterval netconfig.ByteSize
	}{
		{"log", 0},
		{"snapshot", 256 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testWipedFollower(t, tc.snapInterval)
		})
	}
}

func testWipedFollower(t *testing.T, snapInterval netconfig.ByteSize) {
	began := time.Now()
	c := startChaos(t, 3, func(nw *netconfig.Network) {
		if snapInterval != 0 {
			nw.Channel.Raft.SnapshotIntervalSize = snapInterval
		}
	})
	rng := chaosRand(t)
	ld := c.startLoad(t)
	c.waitHeightsAdvance(t, c.orderers(), 5, 15*time.Second)

	view := c.waitOneLeader(t, c.orderers(), 10*time.Second)
	leader, _ := view.leader()
	followers := except(c.orderers(), leader)
	victim := followers[rng.IntN(len(followers))]
	dataDir := c.ordererDataDir(t, victim)
	t.Logf("leader %s; wiping follower %s (%s)", leader, victim, dataDir)
	ld.noteKill(victim, false)
	if err := c.n.Kill(victim, false); err != nil {
		t.Fatalf("stop %s: %v", victim, err)
	}
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}
	// Let the others order (and compact their raft logs) without it.
	c.waitHeightsAdvance(t, except(c.orderers(), victim), 10, 20*time.Second)
	target := c.maxHeight(t, except(c.orderers(), victim))
	c.restart(t, victim)
	c.join(t, victim)
	took, last, ok := c.converged(t, c.orderers(), target, 30*time.Second)
	if !ok {
		t.Fatalf("orderers did not converge at a height of at least %d within 30s; status:\n%s", target, last)
	}
	t.Logf("%s rebuilt %d blocks in %s", victim, target, took.Round(time.Millisecond))
	if snapInterval != 0 {
		// Not asserted (log text is no API), but say whether the snapshot path ran.
		raw, _ := os.ReadFile(c.process(t, victim).Log)
		t.Logf("%s's log mentions catching up from a snapshot: %v", victim, bytes.Contains(raw, []byte("snapshot")) && bytes.Contains(raw, []byte("pull")))
	}

	ld.stop(t)
	c.checkLedgers(t, ld)
	t.Logf("whole test: %s", time.Since(began).Round(time.Millisecond))
}

// chaosNet is a running network with what the chaos tests need to reach its
// orderers as user1 and as the orderer organisation's admin.
type chaosNet struct {
	n               *localnet.Network
	channel         string
	signer          *crypto.SigningIdentity
	tlsCfg          *tls.Config // orderer TLS root, for Broadcast and Deliver
	adminTLS        *tls.Config // orderer admin's client certificate, for the participation API
	electionTimeout time.Duration
	addr, admin     map[string]string // orderer name -> gRPC / participation address
	hc              *http.Client
}

// startChaos brings up the given number of orderers (no peers) and stops
// them at the end.
func startChaos(t *testing.T, orderers int, tweak func(*netconfig.Network)) *chaosNet {
	t.Helper()
	nw, err := netconfig.Generate(1, 1, orderers)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(nw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	upStart := time.Now()
	dir := t.TempDir()
	n, err := localnet.Up(ctx, localnet.Options{Dir: dir, Binary: cairnBin, Network: nw, Progress: &progress, NoSync: true, OrderersOnly: true})
	if err != nil {
		t.Fatalf("network up: %v\n%s", err, progress.String())
	}
	t.Logf("network up with %d orderers: %s", orderers, time.Since(upStart).Round(time.Millisecond))
	c := &chaosNet{
		n:               n,
		channel:         n.Info.Channel,
		electionTimeout: time.Duration(nw.Channel.Raft.ElectionTick) * time.Duration(nw.Channel.Raft.TickInterval),
		addr:            map[string]string{},
		admin:           map[string]string{},
		hc:              &http.Client{Timeout: time.Second},
	}
	t.Cleanup(func() {
		c.hc.CloseIdleConnections()
		if err := n.Stop(); err != nil {
			t.Errorf("network stop: %v", err)
		}
		if t.Failed() {
			dumpLogs(t, dir)
		}
	})
	for _, o := range n.Info.Orderers {
		c.addr[o.Name], c.admin[o.Name] = o.Address, o.AdminAddress
	}
	user := n.Info.Organizations[0].Users["user1"]
	certPEM, err := os.ReadFile(user.Cert)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(user.Key)
	if err != nil {
		t.Fatal(err)
	}
	key, err := crypto.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c.signer = &crypto.SigningIdentity{MSPID: n.Info.Organizations[0].MSPID, CertPEM: certPEM, Key: key}
	rootPEM, err := os.ReadFile(n.Info.Orderers[0].TLSRootCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatal("orderer TLS root holds no certificate")
	}
	c.tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	l := cryptogen.Layout{Root: filepath.Join(dir, "crypto")}
	domain := nw.OrdererOrgs[0].Domain
	c.adminTLS, err = comm.ClientTLS([]string{l.TLSCACertPath(false, domain)},
		l.UserTLSCertPath(false, domain, cryptogen.AdminUser), l.UserTLSKeyPath(false, domain, cryptogen.AdminUser), "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chaosRand returns the victim chooser, seeded from CAIRN_CHAOS_SEED or the clock.
func chaosRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CAIRN_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CAIRN_CHAOS_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("victim seed %d (replay with CAIRN_CHAOS_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed))
}

// dumpLogs prints the tail of every orderer log of a failed test.
func dumpLogs(t *testing.T, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "orderer*.log"))
	for _, path := range logs {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("--- last lines of %s:\n%s", filepath.Base(path), strings.Join(lines, "\n"))
	}
}

func (c *chaosNet) orderers() []string {
	var names []string
	for _, o := range c.n.Info.Orderers {
		names = append(names, o.Name)
	}
	return names
}

func except(names []string, drop ...string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(drop, n) {
			out = append(out, n)
		}
	}
	return out
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

func (c *chaosNet) process(t *testing.T, name string) *localnet.Process {
	t.Helper()
	for _, p := range c.n.Processes() {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no process %s", name)
	return nil
}

func (c *chaosNet) pid(t *testing.T, name string) int { return c.process(t, name).PID }

func (c *chaosNet) signal(t *testing.T, name string, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(c.pid(t, name), sig); err != nil {
		t.Fatalf("%s to %s: %v", sig, name, err)
	}
}

func (c *chaosNet) restart(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.n.Restart(ctx, name); err != nil {
		t.Fatalf("restart %s: %v", name, err)
	}
}

// raftView is the raft state each answering orderer reports on its /metrics.
type raftView map[string]localnet.RaftState

// leader returns the leader with the highest term, if any.
func (v raftView) leader() (string, uint64) {
	var name string
	var term uint64
	for n, st := range v {
		if st.Leader && st.Term >= term {
			name, term = n, st.Term
		}
	}
	return name, term
}

func (v raftView) String() string {
	var parts []string
	for n, st := range v {
		parts = append(parts, fmt.Sprintf("%s leader=%v term=%d", n, st.Leader, st.Term))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// raft reads the raft state of the named orderers from their /metrics,
// concurrently; orderers that do not answer are left out.
func (c *chaosNet) raft(t *testing.T, names []string) raftView {
	t.Helper()
	var mu sync.Mutex
	view := raftView{}
	var wg sync.WaitGroup
	for _, name := range names {
		p := c.process(t, name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.OperationsAddress+"/metrics", nil)
			if err != nil {
				return
			}
			resp, err := c.hc.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			rs, err := localnet.ParseRaftMetrics(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				return
			}
			mu.Lock()
			view[name] = rs[c.channel]
			mu.Unlock()
		}()
	}
	wg.Wait()
	return view
}

// waitLeader polls the named orderers until one leads and ok accepts it,
// failing if that takes longer than bound since from. It returns the view
// and the time from `from` to when the leader was seen.
func (c *chaosNet) waitLeader(t *testing.T, names []string, bound time.Duration, from time.Time, ok func(string, localnet.RaftState) bool) (raftView, time.Duration) {
	t.Helper()
	for {
		view := c.raft(t, names)
		if name, _ := view.leader(); name != "" && ok(name, view[name]) {
			return view, time.Since(from)
		}
		if time.Since(from) > bound {
			// Say whether the election was only slow or never ended.
			for time.Since(from) < bound+15*time.Second {
				later := c.raft(t, names)
				if name, _ := later.leader(); name != "" && ok(name, later[name]) {
					t.Fatalf("raft leader among %v only after %s, bound %s (election timeout %s); at the bound: %s; then: %s",
						names, time.Since(from).Round(time.Millisecond), bound, c.electionTimeout, view, later)
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Fatalf("no acceptable raft leader among %v within %s (election timeout %s); view: %s", names, bound+15*time.Second, c.electionTimeout, view)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitOneLeader waits until exactly one of the named orderers claims to lead.
func (c *chaosNet) waitOneLeader(t *testing.T, names []string, within time.Duration) raftView {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		view := c.raft(t, names)
		leaders := 0
		for _, st := range view {
			if st.Leader {
				leaders++
			}
		}
		if leaders == 1 && len(view) == len(names) {
			return view
		}
		if time.Now().After(deadline) {
			t.Fatalf("not exactly one leader among %v within %s; view: %s", names, within, view)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// height asks one orderer, over Deliver, for its chain height.
func (c *chaosNet) height(name string) (uint64, error) {
	conn, err := comm.Dial(c.addr[name], c.tlsCfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var h uint64
	err = deliverclient.Seek(ctx, conn, c.channel, c.signer, &ab.SeekInfo{
		Start:    &ab.SeekPosition{Type: &ab.SeekPosition_Newest{Newest: &ab.SeekNewest{}}},
		Stop:     &ab.SeekPosition{Type: &ab.SeekPosition_Newest{Newest: &ab.SeekNewest{}}},
		Behavior: ab.SeekInfo_FAIL_IF_NOT_READY,
	}, func(b *cb.Block) { h = b.Header.Number + 1 })
	return h, err
}

// heights asks the named orderers for their heights concurrently; an orderer
// that does not answer is missing from the map.
func (c *chaosNet) heights(names []string) (map[string]uint64, map[string]error) {
	var mu sync.Mutex
	hs, errs := map[string]uint64{}, map[string]error{}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := c.height(name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[name] = err
				return
			}
			hs[name] = h
		}()
	}
	wg.Wait()
	return hs, errs
}

func (c *chaosNet) maxHeight(t *testing.T, names []string) uint64 {
	t.Helper()
	hs, errs := c.heights(names)
	if len(errs) > 0 {
		t.Fatalf("heights of %v: %v", names, errs)
	}
	var m uint64
	for _, h := range hs {
		m = max(m, h)
	}
	return m
}

// waitHeightsAdvance waits until every named orderer is at least blocks past
// the highest of them now, and returns how far they went.
func (c *chaosNet) waitHeightsAdvance(t *testing.T, names []string, blocks uint64, within time.Duration) uint64 {
	t.Helper()
	start := c.maxHeight(t, names)
	deadline := time.Now().Add(within)
	for {
		hs, errs := c.heights(names)
		low := uint64(math.MaxUint64)
		for _, h := range hs {
			low = min(low, h)
		}
		if len(errs) == 0 && low >= start+blocks {
			return low - start
		}
		if time.Now().After(deadline) {
			t.Fatalf("orderers %v did not advance %d blocks past %d within %s: heights %v, errors %v", names, blocks, start, within, hs, errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitConverged waits until every named orderer answers, all at one height of
// at least target, as seen by localnet.Status (what `cairn network status`
// shows). It returns how long that took.
func (c *chaosNet) waitConverged(t *testing.T, names []string, target uint64, within time.Duration) time.Duration {
	t.Helper()
	took, last, ok := c.converged(t, names, target, within)
	if !ok {
		t.Fatalf("orderers %v did not converge at a height of at least %d within %s; status:\n%s", names, target, within, last)
	}
	return took
}

// converged is waitConverged that reports failure, with the last status seen.
func (c *chaosNet) converged(t *testing.T, names []string, target uint64, within time.Duration) (time.Duration, string, bool) {
	t.Helper()
	began := time.Now()
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rep, err := localnet.Status(ctx, c.n.Dir)
		cancel()
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		var hs []uint64
		var desc []string
		for _, ns := range rep.Nodes {
			if !slices.Contains(names, ns.Name) {
				continue
			}
			h, ok := ns.Height[c.channel]
			if ns.Healthy && ok {
				hs = append(hs, h)
			}
			desc = append(desc, fmt.Sprintf("%s healthy=%v height=%d leader=%v term=%d %s", ns.Name, ns.Healthy, h, ns.Leader, ns.Term, strings.Join(ns.Problems, "; ")))
		}
		last = strings.Join(desc, "\n")
		if len(hs) == len(names) && hs[0] >= target && slices.Min(hs) == slices.Max(hs) {
			return time.Since(began), last, true
		}
		if time.Since(began) > within {
			return time.Since(began), last, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mustBroadcast sends one envelope to each named orderer in turn until one
// answers SUCCESS.
func (c *chaosNet) mustBroadcast(t *testing.T, names []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for i := 0; time.Now().Before(deadline); i++ {
		name := names[i%len(names)]
		if last = c.broadcastOne(name); last == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no Broadcast to %v succeeded within %s; last: %v", names, within, last)
}

func (c *chaosNet) broadcastOne(name string) error {
	conn, err := comm.Dial(c.addr[name], c.tlsCfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	stream, err := ab.NewAtomicBroadcastClient(conn).Broadcast(ctx)
	if err != nil {
		return err
	}
	env, _, err := c.newEnvelope(make([]byte, chaosPayloadSize))
	if err != nil {
		return err
	}
	if err := stream.Send(env); err != nil {
		return err
	}
	resp, err := stream.Recv()
	if err != nil {
		return err
	}
	if resp.Status != cb.Status_SUCCESS {
		return fmt.Errorf("%s answered %s: %s", name, resp.Status, resp.Info)
	}
	return nil
}

// newEnvelope signs an endorser transaction carrying payload as user1.
func (c *chaosNet) newEnvelope(payload []byte) (*cb.Envelope, string, error) {
	env, err := envelope.NewSignedEnvelope(cb.HeaderType_ENDORSER_TRANSACTION, c.channel, c.signer, &pb.Transaction{Actions: []*pb.TransactionAction{{Payload: payload}}})
	if err != nil {
		return nil, "", err
	}
	parsed, err := envelope.Parse(env)
	if err != nil {
		return nil, "", err
	}
	return env, parsed.ChannelHeader.TxId, nil
}

// chaosLoad is steady Broadcast traffic: one goroutine per orderer, each with its
// own stream, sending unique signed envelopes one at a time and recording
// the tx IDs answered SUCCESS.
type chaosLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	success  map[string]time.Time // tx ID -> when it was answered SUCCESS
	kills    []fault
	statuses map[string]int    // non-SUCCESS answers by status
	sample   map[string]string // one Info per non-SUCCESS status, for the log
	perNode  map[string]int    // SUCCESS answers by orderer
	broken   atomic.Int64      // streams that broke or timed out
}

// fault is a kill or freeze injected while the load ran.
type fault struct {
	at   time.Time
	what string
}

// noteKill records that victim (the leader or not) was killed or frozen now.
func (ld *chaosLoad) noteKill(victim string, leader bool) {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	what := "a kill of follower " + victim
	if leader {
		what = "a kill of leader " + victim
	}
	ld.kills = append(ld.kills, fault{at: time.Now(), what: what})
}

func (c *chaosNet) startLoad(t *testing.T) *chaosLoad {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ld := &chaosLoad{cancel: cancel, success: map[string]time.Time{}, statuses: map[string]int{}, sample: map[string]string{}, perNode: map[string]int{}}
	t.Cleanup(ld.halt)
	payload := make([]byte, chaosPayloadSize)
	for i := range payload {
		payload[i] = byte(i)
	}
	// Watch leadership, so that envelopes lost to a leader change no kill
	// caused (a step-down) are told apart.
	ld.wg.Add(1)
	go func() {
		defer ld.wg.Done()
		var lastTerm uint64
		for ctx.Err() == nil {
			if name, term := c.raft(t, c.orderers()).leader(); term > lastTerm {
				if lastTerm != 0 {
					ld.mu.Lock()
					ld.kills = append(ld.kills, fault{at: time.Now(), what: fmt.Sprintf("term %d (leader %s)", term, name)})
					ld.mu.Unlock()
				}
				lastTerm = term
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	for _, name := range c.orderers() {
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			for ctx.Err() == nil {
				if err := ld.stream(ctx, c, name, payload); err != nil && ctx.Err() == nil {
					ld.broken.Add(1)
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		}()
	}
	return ld
}

// stream keeps one Broadcast stream to one orderer until it breaks, an answer
// takes longer than 3 s (a dead or frozen orderer), or ctx ends.
func (ld *chaosLoad) stream(ctx context.Context, c *chaosNet, name string, payload []byte) error {
	conn, err := comm.Dial(c.addr[name], c.tlsCfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchdog := time.AfterFunc(3*time.Second, cancel)
	defer watchdog.Stop()
	stream, err := ab.NewAtomicBroadcastClient(conn).Broadcast(sctx)
	if err != nil {
		return err
	}
	for {
		env, txID, err := c.newEnvelope(payload)
		if err != nil {
			return err
		}
		watchdog.Reset(3 * time.Second)
		if err := stream.Send(env); err != nil {
			return err
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		watchdog.Stop()
		ld.mu.Lock()
		if resp.Status == cb.Status_SUCCESS {
			ld.success[txID] = time.Now()
			ld.perNode[name]++
		} else {
			ld.statuses[resp.Status.String()]++
			ld.sample[resp.Status.String()] = name + ": " + resp.Info
		}
		ld.mu.Unlock()
		select {
		case <-ctx.Done():
			_ = stream.CloseSend()
			return nil
		case <-time.After(chaosSendPause):
		}
	}
}

func (ld *chaosLoad) halt() {
	ld.cancel()
	ld.wg.Wait()
}

// stop ends the load and logs what it saw.
func (ld *chaosLoad) stop(t *testing.T) {
	t.Helper()
	ld.halt()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	t.Logf("load: %d envelopes answered SUCCESS %v, other answers %v (e.g. %v), %d streams broken or timed out",
		len(ld.success), ld.perNode, ld.statuses, ld.sample, ld.broken.Load())
	if len(ld.success) == 0 {
		t.Fatal("no envelope was answered SUCCESS; the test proves nothing")
	}
}

// checkLedgers waits for the orderers to agree on a height, delivers every
// block from every orderer and checks that they are byte-identical, chained,
// and hold each envelope at most once; SUCCESS envelopes missing from the
// chain are reported, not failed (SUCCESS only means accepted).
func (c *chaosNet) checkLedgers(t *testing.T, ld *chaosLoad) {
	t.Helper()
	names := c.orderers()
	// Let the last batch be cut, then wait for a stable common height.
	time.Sleep(time.Second)
	var height uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		hs, errs := c.heights(names)
		if len(errs) == 0 {
			vals := make([]uint64, 0, len(hs))
			for _, h := range hs {
				vals = append(vals, h)
			}
			if slices.Min(vals) == slices.Max(vals) && vals[0] == height {
				break // the same height twice in a row
			}
			height = vals[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("orderers did not converge: heights %v, errors %v", hs, errs)
		}
		time.Sleep(500 * time.Millisecond)
	}

	var reference [][]byte
	for _, name := range names {
		blocks := c.deliverAll(t, name, height)
		if reference == nil {
			reference = blocks
			continue
		}
		for i := range blocks {
			if !bytes.Equal(blocks[i], reference[i]) {
				t.Fatalf("block %d of %s differs from %s's (%d vs %d bytes)", i, name, names[0], len(blocks[i]), len(reference[i]))
			}
		}
	}

	seen := map[string]int{}
	var prevHash []byte
	envelopes := 0
	for i, raw := range reference {
		b, err := block.Unmarshal(raw)
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if b.Header.Number != uint64(i) {
			t.Fatalf("block %d carries number %d", i, b.Header.Number)
		}
		if i > 0 && !bytes.Equal(b.Header.PreviousHash, prevHash) {
			t.Fatalf("block %d: previous hash does not match block %d's header hash", i, i-1)
		}
		if !bytes.Equal(b.Header.DataHash, block.DataHash(b.Data)) {
			t.Fatalf("block %d: data hash does not match its data", i)
		}
		prevHash = block.HeaderHash(b.Header)
		if block.IsConfig(b) {
			continue
		}
		for j := range b.Data.Data {
			ch, err := block.ChannelHeader(b, j)
			if err != nil {
				t.Fatalf("block %d envelope %d: %v", i, j, err)
			}
			seen[ch.TxId]++
			envelopes++
		}
	}
	var dups []string
	for id, n := range seen {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", id, n))
		}
	}
	if len(dups) > 0 {
		slices.Sort(dups)
		t.Errorf("%d tx IDs ordered more than once: %v", len(dups), dups[:min(len(dups), 10)])
	}
	ld.mu.Lock()
	missing := 0
	// Each missing envelope is explained by the first fault after its SUCCESS:
	// a leader crash loses what it accepted but had not replicated yet.
	explained := map[string]int{}
	slices.SortFunc(ld.kills, func(a, b fault) int { return a.at.Compare(b.at) })
	for id, at := range ld.success {
		if seen[id] > 0 {
			continue
		}
		missing++
		why := "no fault after it"
		for _, k := range ld.kills {
			if k.at.After(at) {
				why = fmt.Sprintf("answered <%s before %s", k.at.Sub(at).Truncate(100*time.Millisecond)+100*time.Millisecond, k.what)
				break
			}
		}
		explained[why]++
	}
	accepted := len(ld.success)
	ld.mu.Unlock()
	if missing > 0 {
		t.Logf("SUCCESS envelopes missing from the chain, by the first fault after them: %v", explained)
	}
	t.Logf("ledger: %d blocks byte-identical on %d orderers, %d envelopes (%d distinct tx IDs); %d of %d SUCCESS envelopes are not in the chain",
		height, len(names), envelopes, len(seen), missing, accepted)
}

// deliverAll delivers blocks 0..height-1 from one orderer, re-marshalled
// deterministically.
func (c *chaosNet) deliverAll(t *testing.T, name string, height uint64) [][]byte {
	t.Helper()
	conn, err := comm.Dial(c.addr[name], c.tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var blocks [][]byte
	var merr error
	err = deliverclient.Seek(ctx, conn, c.channel, c.signer, &ab.SeekInfo{
		Start:    &ab.SeekPosition{Type: &ab.SeekPosition_Specified{Specified: &ab.SeekSpecified{Number: 0}}},
		Stop:     &ab.SeekPosition{Type: &ab.SeekPosition_Specified{Specified: &ab.SeekSpecified{Number: height - 1}}},
		Behavior: ab.SeekInfo_BLOCK_UNTIL_READY,
	}, func(b *cb.Block) {
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
		if err != nil {
			merr = err
		}
		blocks = append(blocks, raw)
	})
	if err == nil {
		err = merr
	}
	if err != nil {
		t.Fatalf("deliver blocks 0..%d from %s: %v", height-1, name, err)
	}
	if uint64(len(blocks)) != height {
		t.Fatalf("%s delivered %d blocks, want %d", name, len(blocks), height)
	}
	return blocks
}

// dataFingerprint lists the files of an orderer's data folder with sizes and
// modification times.
func (c *chaosNet) dataFingerprint(t *testing.T, name string) string {
	t.Helper()
	root := c.ordererDataDir(t, name)
	var b strings.Builder
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		fmt.Fprintf(&b, "%s:%d:%d ", rel, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return b.String()
}

// ordererDataDir reads an orderer's dataDir from its orderer.yaml.
func (c *chaosNet) ordererDataDir(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(c.n.Dir, "nodes", name, "orderer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		DataDir string `yaml:"dataDir"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir == "" {
		t.Fatalf("%s's orderer.yaml names no dataDir", name)
	}
	return cfg.DataDir
}

// join creates the channel on one orderer through the channel participation
// API with the genesis block, as the orderer organisation's admin.
func (c *chaosNet) join(t *testing.T, name string) {
	t.Helper()
	genesis, err := os.ReadFile(filepath.Join(c.n.Dir, "artifacts", c.channel+".block"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.adminTLS}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	if err := localnet.PostConfigBlock(t.Context(), hc, "https://"+c.admin[name]+"/participation/v1/channels", genesis); err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
}
