package localnet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// crashCycles is how many times TestPeerCrashCycles kills the second peer.
const crashCycles = 10

// TestPeerCrashCycles runs one organisation with two peers under load through
// peer0's gateway and SIGKILLs peer1 at random instants (seeded; set
// CAIRN_PEERCRASH_SEED to replay a run). After each restart peer1 must catch
// up with peer0 and hold the same blocks with the same validation codes. At
// the end both peers, stopped, pass `cairn peer ledger verify` with equal
// heights, last block hashes and state digests; then peer1 loses its data
// folder, is joined again from the genesis block, replays the whole chain and
// must reach the same state digest.
func TestPeerCrashCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network and kills a peer ten times")
	}
	began := time.Now()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CAIRN_PEERCRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CAIRN_PEERCRASH_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (CAIRN_PEERCRASH_SEED=%d replays the kill instants)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))

	net, err := netconfig.Generate(1, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	n, err := localnet.Up(ctx, localnet.Options{Dir: t.TempDir(), Binary: cairnBin, Network: net, Progress: &progress})
	if err != nil {
		t.Fatalf("network up: %v\n%s", err, progress.String())
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("network stop: %v", err)
		}
	})
	t.Logf("network up in %s", time.Since(began).Round(time.Millisecond))
	peer0 := n.Info.Organizations[0].Peers[0].Name
	peer1 := n.Info.Organizations[0].Peers[1].Name
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, filepath.Join(n.Dir, "logs", peer1+".log"), 40)
		}
	})

	// Load: submitters writing distinct keys through peer0's gateway.
	var submitted, committed atomic.Int64
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			gw, conn, err := n.Gateway(0, "user1")
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			defer gw.Close()
			contract := gw.GetNetwork(n.Info.Channel).GetContract("basic")
			// Up to inFlight transactions await their commit status at once,
			// so blocks carry many transactions.
			const inFlight = 8
			sem := make(chan struct{}, inFlight)
			var pending sync.WaitGroup
			defer pending.Wait()
			for i := 0; loadCtx.Err() == nil; i++ {
				select {
				case sem <- struct{}{}:
				case <-loadCtx.Done():
					return
				}
				_, commit, err := contract.SubmitAsync("CreateAsset", client.WithArguments(fmt.Sprintf("cycle-%d-%d", c, i), "red", "1", "X", "1"))
				if err != nil {
					<-sem
					time.Sleep(20 * time.Millisecond)
					continue
				}
				submitted.Add(1)
				pending.Add(1)
				go func() {
					defer pending.Done()
					defer func() { <-sem }()
					if st, err := commit.Status(); err == nil && st.Successful {
						committed.Add(1)
					}
				}()
			}
		}(c)
	}
	defer func() { stopLoad(); wg.Wait() }()

	ref := newChainReader(t, n, 0) // peer0, never killed: its blocks are cached
	defer ref.close()
	for cycle := 1; cycle <= crashCycles; cycle++ {
		delay := time.Duration(100+rng.IntN(1900)) * time.Millisecond
		time.Sleep(delay)
		killAndWait(t, n, peer1, true)
		t.Logf("cycle %d at %s: SIGKILL %s after %s (%d txs submitted)", cycle, time.Since(began).Round(time.Millisecond), peer1, delay, submitted.Load())
		rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := n.Restart(rctx, peer1)
		rcancel()
		if err != nil {
			t.Fatalf("cycle %d: restart %s: %v", cycle, peer1, err)
		}
		restartChaincodeOf(t, n, peer1)
		h := ref.height()
		fresh := newChainReader(t, n, 1)
		fresh.waitHeight(h, 30*time.Second)
		compareChains(t, ref, fresh, h)
		fresh.close()
		t.Logf("cycle %d: %s caught up to height %d, blocks and validation codes equal", cycle, peer1, h)
	}
	stopLoad()
	wg.Wait()
	if committed.Load() == 0 {
		t.Fatal("no transaction committed; the test proves nothing")
	}
	t.Logf("load stopped: %d submitted, %d VALID", submitted.Load(), committed.Load())

	// Let the last blocks reach both peers, then stop them cleanly.
	final := ref.settledHeight()
	p1 := newChainReader(t, n, 1)
	p1.waitHeight(final, 30*time.Second)
	compareChains(t, ref, p1, final)
	p1.close()
	for _, name := range []string{peer0, peer1} {
		killAndWait(t, n, name, false)
	}
	r0, r1 := verifyLedger(t, n, peer0), verifyLedger(t, n, peer1)
	if r0.Height != final || r1 != r0 {
		t.Fatalf("ledger verify differs after %d crashes:\n%s: %+v\n%s: %+v (chain height %d)", crashCycles, peer0, r0, peer1, r1, final)
	}
	t.Logf("both ledgers verify: height %d, %d txs (%d VALID), state digest %s", r0.Height, r0.Transactions, r0.Valid, r0.StateDigest)

	// A fresh peer replays the chain: peer1 without its data folder, joined
	// again from the genesis block.
	var cfg struct {
		DataDir string `yaml:"dataDir"`
	}
	raw, err := os.ReadFile(peerConfigPath(n, peer1))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil || cfg.DataDir == "" {
		t.Fatalf("dataDir of %s: %v", peer1, err)
	}
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	if err := n.Restart(rctx, peer1); err != nil {
		t.Fatalf("start %s with no data: %v", peer1, err)
	}
	replayBegan := time.Now()
	joinChannel(t, rctx, n, 1)
	p1 = newChainReader(t, n, 1)
	p1.waitHeight(final, 60*time.Second)
	p1.close()
	t.Logf("fresh %s replayed %d blocks in %s", peer1, final, time.Since(replayBegan).Round(time.Millisecond))
	if time.Since(replayBegan) > 5*time.Second {
		logWarnings(t, filepath.Join(n.Dir, "logs", peer1+".log"))
	}
	killAndWait(t, n, peer1, false)
	if r := verifyLedger(t, n, peer1); r != r0 {
		t.Fatalf("replayed ledger differs:\n%s: %+v\nreplayed %s: %+v", peer0, r0, peer1, r)
	}
	t.Logf("replayed ledger equals peer0's; total %s", time.Since(began).Round(time.Millisecond))
}

// chainReader reads one peer's chain with qscc through that peer's gateway.
type chainReader struct {
	t       *testing.T
	name    string
	channel string
	conn    *grpc.ClientConn
	gw      *client.Gateway
	qscc    *client.Contract
	blocks  map[uint64]*cb.Block // cached blocks; only for a peer never killed
	cache   bool
}

func newChainReader(t *testing.T, n *localnet.Network, peerIndex int) *chainReader {
	t.Helper()
	gw, conn, err := localnet.ConnectGateway(n.Info, 0, peerIndex, "user1")
	if err != nil {
		t.Fatal(err)
	}
	return &chainReader{
		t: t, name: n.Info.Organizations[0].Peers[peerIndex].Name, channel: n.Info.Channel, conn: conn, gw: gw,
		qscc:   gw.GetNetwork(n.Info.Channel).GetContract("qscc"),
		blocks: map[uint64]*cb.Block{}, cache: peerIndex == 0,
	}
}

func (r *chainReader) close() { r.gw.Close(); r.conn.Close() }

// tryHeight asks the peer for its chain height.
func (r *chainReader) tryHeight() (uint64, error) {
	raw, err := r.qscc.EvaluateTransaction("GetChainInfo", r.channel)
	if err != nil {
		return 0, err
	}
	info := &cb.BlockchainInfo{}
	if err := proto.Unmarshal(raw, info); err != nil {
		return 0, err
	}
	return info.Height, nil
}

func (r *chainReader) height() uint64 {
	r.t.Helper()
	h, err := r.tryHeight()
	if err != nil {
		r.t.Fatalf("height of %s: %s", r.name, errorText(err))
	}
	return h
}

// waitHeight waits until the peer holds at least h blocks.
func (r *chainReader) waitHeight(h uint64, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var (
		got uint64
		err error
	)
	for time.Now().Before(deadline) {
		if got, err = r.tryHeight(); err == nil && got >= h {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("%s did not reach height %d in %s: %s", r.name, h, timeout, errorText(err))
	}
	r.t.Fatalf("%s did not reach height %d in %s: at %d", r.name, h, timeout, got)
}

// settledHeight waits until the height stops moving (no block for a second).
func (r *chainReader) settledHeight() uint64 {
	r.t.Helper()
	h := r.height()
	for i := 0; i < 30; i++ {
		time.Sleep(time.Second)
		next := r.height()
		if next == h {
			return h
		}
		h = next
	}
	r.t.Fatalf("%s still commits blocks after the load stopped", r.name)
	return 0
}

func (r *chainReader) block(num uint64) *cb.Block {
	r.t.Helper()
	if b, ok := r.blocks[num]; ok {
		return b
	}
	raw, err := r.qscc.EvaluateTransaction("GetBlockByNumber", r.channel, strconv.FormatUint(num, 10))
	if err != nil {
		r.t.Fatalf("block %d of %s: %s", num, r.name, errorText(err))
	}
	b := &cb.Block{}
	if err := proto.Unmarshal(raw, b); err != nil {
		r.t.Fatal(err)
	}
	if r.cache {
		r.blocks[num] = b
	}
	return b
}

// compareChains checks that blocks 0..h-1 of two peers have the same header
// and the same TRANSACTIONS_FILTER.
func compareChains(t *testing.T, a, b *chainReader, h uint64) {
	t.Helper()
	for num := uint64(0); num < h; num++ {
		ba, bb := a.block(num), b.block(num)
		if !bytes.Equal(block.HeaderHash(ba.Header), block.HeaderHash(bb.Header)) {
			t.Fatalf("block %d: header hash differs between %s and %s", num, a.name, b.name)
		}
		fa, fb := block.TxFilter(ba), block.TxFilter(bb)
		if len(fa) != len(ba.Data.Data) {
			t.Fatalf("block %d of %s has %d validation codes for %d transactions", num, a.name, len(fa), len(ba.Data.Data))
		}
		if !bytes.Equal(fa, fb) {
			t.Fatalf("block %d: validation codes differ: %s %v, %s %v", num, a.name, filterCodes(fa), b.name, filterCodes(fb))
		}
	}
}

func filterCodes(filter []byte) []pb.TxValidationCode {
	out := make([]pb.TxValidationCode, len(filter))
	for i, c := range filter {
		out[i] = pb.TxValidationCode(c)
	}
	return out
}

// restartChaincodeOf starts again the chaincode process of a peer if it
// exited with its peer.
func restartChaincodeOf(t *testing.T, n *localnet.Network, peerName string) {
	t.Helper()
	for _, p := range n.Processes() {
		if p.Name == "basic."+peerName && syscall.Kill(p.PID, 0) != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := n.Restart(ctx, p.Name)
			cancel()
			if err != nil {
				t.Fatalf("restart chaincode of %s: %v", peerName, err)
			}
		}
	}
}

func peerConfigPath(n *localnet.Network, name string) string {
	return filepath.Join(n.Dir, "nodes", name, "peer.yaml")
}

// ledgerVerify is the part of `cairn peer ledger verify --json` the test compares.
type ledgerVerify struct {
	Channel       string `json:"channel"`
	Height        uint64 `json:"height"`
	LastBlockHash string `json:"lastBlockHash"`
	Transactions  int    `json:"transactions"`
	Valid         int    `json:"valid"`
	StateDigest   string `json:"stateDigest"`
	StateKeys     int    `json:"stateKeys"`
}

// verifyLedger runs `cairn peer ledger verify --json` on a stopped peer and
// returns its one channel's report.
func verifyLedger(t *testing.T, n *localnet.Network, name string) ledgerVerify {
	t.Helper()
	out, err := exec.Command(cairnBin, "peer", "ledger", "verify", "--json", "--config", peerConfigPath(n, name)).CombinedOutput()
	if err != nil {
		t.Fatalf("ledger verify %s: %v\n%s", name, err, out)
	}
	var report struct {
		Channels []ledgerVerify `json:"channels"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("ledger verify %s output: %v\n%s", name, err, out)
	}
	if len(report.Channels) != 1 || len(report.Channels[0].StateDigest) != 64 {
		t.Fatalf("ledger verify %s: %s", name, out)
	}
	return report.Channels[0]
}

// joinChannel joins a peer of the first organisation to the channel with
// cscc JoinChain and the genesis block, signed by the organisation's admin, as
// `cairn network up` does.
func joinChannel(t *testing.T, ctx context.Context, n *localnet.Network, peerIndex int) {
	t.Helper()
	const mspID, domain = "Org1MSP", "org1.example.com"
	peer := n.Info.Organizations[0].Peers[peerIndex]
	genesis, err := os.ReadFile(filepath.Join(n.Dir, "artifacts", n.Info.Channel+".block"))
	if err != nil {
		t.Fatal(err)
	}
	l := cryptogen.Layout{Root: filepath.Join(n.Dir, "crypto")}
	admin, err := crypto.LoadSigningIdentity(mspID, l.UserMSPDir(true, domain, cryptogen.AdminUser))
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := comm.ClientTLS([]string{l.TLSCACertPath(true, domain)},
		l.UserTLSCertPath(true, domain, cryptogen.AdminUser), l.UserTLSKeyPath(true, domain, cryptogen.AdminUser), peer.Name)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := comm.Dial(peer.Address, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	prop, _, err := envelope.NewProposal("", "cscc", [][]byte{[]byte("JoinChain"), genesis}, nil, admin.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	sp, err := envelope.SignProposal(prop, admin)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := pb.NewEndorserClient(conn).ProcessProposal(ctx, sp)
	if err != nil {
		t.Fatalf("JoinChain on %s: %v", peer.Name, err)
	}
	if resp.GetResponse().GetStatus() != 200 {
		t.Fatalf("JoinChain on %s: status %d: %s", peer.Name, resp.GetResponse().GetStatus(), resp.GetResponse().GetMessage())
	}
}

// logTail logs the last lines of a node's log file.
func logTail(t *testing.T, path string, lines int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Logf("read %s: %v", path, err)
		return
	}
	all := bytes.Split(bytes.TrimRight(raw, "\n"), []byte("\n"))
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	t.Logf("last lines of %s:\n%s", filepath.Base(path), bytes.Join(all, []byte("\n")))
}

// killAndWait stops a process (SIGKILL when hard, else SIGTERM) and waits
// until its PID is gone from /proc. Kill returns once the thread-group
// leader is a zombie, but another thread of a SIGKILLed Go process may still
// be finishing a system call (an fsync) and hold its files, LevelDB's lock
// among them: a peer restarted then fails with "open index: resource
// temporarily unavailable". The start goroutine of localnet reaps the
// process only once every thread has exited.
func killAndWait(t *testing.T, n *localnet.Network, name string, hard bool) {
	t.Helper()
	pid := 0
	for _, p := range n.Processes() {
		if p.Name == name {
			pid = p.PID
		}
	}
	if err := n.Kill(name, hard); err != nil {
		t.Fatal(err)
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		var state, threads string
		for _, line := range bytes.Split(st, []byte("\n")) {
			if v, ok := bytes.CutPrefix(line, []byte("State:")); ok {
				state = string(bytes.TrimSpace(v))
			}
			if v, ok := bytes.CutPrefix(line, []byte("Threads:")); ok {
				threads = string(bytes.TrimSpace(v))
			}
		}
		t.Logf("%s (pid %d) stopped by Kill but still in /proc: state %s, threads %s", name, pid, state, threads)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still in /proc 10s after it was stopped", name, pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logWarnings logs the warnings and errors a node logged since it last started.
func logWarnings(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Logf("read %s: %v", path, err)
		return
	}
	lines := bytes.Split(raw, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if bytes.Contains(lines[i], []byte(`"peer started"`)) {
			lines = lines[i:]
			break
		}
	}
	for _, line := range lines {
		if bytes.Contains(line, []byte(`"log.level":"warn"`)) || bytes.Contains(line, []byte(`"log.level":"error"`)) {
			t.Logf("%s: %s", filepath.Base(path), line)
		}
	}
}
