package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/localnet"
)

// Defaults of GatewayConfig.
const (
	DefaultGatewayClients = 200
	// DefaultGatewayConns is the number of gateway connections (one gRPC
	// connection each) the clients share, spread over every peer.
	DefaultGatewayConns = 4
	DefaultHotKeys      = 8
	DefaultWarmup       = 3 * time.Second
	// CommitByRPC and CommitByEvents are the ways GatewayConfig.CommitStatus
	// names for a client to learn that its transaction committed.
	CommitByRPC    = "rpc"
	CommitByEvents = "events"
	// drainTimeout bounds how long the transactions in flight at the end of
	// the window may take to report their commit status.
	drainTimeout = 30 * time.Second
)

// GatewayConfig configures an end-to-end benchmark through the official
// fabric-gateway client: each client submits transactions of the sample
// contract (SubmitAsync, then the commit status) one at a time.
type GatewayConfig struct {
	// Info is the network (network.json); Chaincode the chaincode to invoke:
	// basic (default; CreateAsset of a fresh asset, UpdateAsset of a hot one)
	// or shimcheck (Put of a fresh key, PutGet of a hot one: the plain-shim
	// contract of `cairn bench endorse`).
	Info      *localnet.Info
	Chaincode string
	// User is the client identity of every organisation (default user1).
	User string
	// Clients is the number of concurrent submitters, each with one
	// transaction in flight.
	Clients int
	// Conns is the number of gateway connections the clients share; connection
	// i goes to peer i/len(orgs) of organisation i%len(orgs), so both
	// organisations' gateways are used.
	Conns int
	// Duration of the measured window, after Warmup.
	Duration, Warmup time.Duration
	// HotPct is the percentage (0–100) of transactions that update one of
	// HotKeys existing assets (UpdateAsset: one read, one write) instead of
	// creating a fresh one; concurrent updates of one key conflict
	// (MVCC_READ_CONFLICT).
	HotPct  float64
	HotKeys int
	// CommitStatus is how each client learns its transaction's validation
	// code: CommitByRPC (default) asks the gateway with Commit.Status, one
	// signed CommitStatus call per transaction, as the fabric-gateway samples
	// do; CommitByEvents reads it from the filtered block events of the
	// client's gateway connection (one stream per connection, every client
	// registering its transaction ID before it submits), as applications of
	// Fabric 1.4's SDKs did with their event hubs.
	CommitStatus string
	// Processes are the network's processes on this machine whose CPU time
	// counts, with the benchmark's own, towards CPUPerTxUs.
	Processes []Process
	// Progress, if set, receives progress lines.
	Progress io.Writer
}

// GatewayResult is what `cairn bench gateway --json` prints.
type GatewayResult struct {
	// TPS is the transactions committed VALID during the measured window, per
	// second.
	TPS float64 `json:"tps"`
	// P50ms, P90ms, P99ms and MaxMs are submit-to-commit latencies (from the
	// start of SubmitAsync to the commit status, i.e. endorse, sign, submit,
	// order, validate, commit) of the transactions committed in the window,
	// whatever their validation code.
	P50ms float64 `json:"p50_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// Submitted, Committed, Valid and Errors count the whole run (warm-up,
	// window and the transactions in flight at its end). Committed is every
	// transaction whose commit status came back, whatever its code; Valid
	// those with code VALID; Codes counts them by validation code name.
	// Errors are transactions that failed before a commit status (endorse,
	// submit or commit-status errors), split in ErrorsByPhase.
	Submitted     int64            `json:"submitted"`
	Committed     int64            `json:"committed"`
	Valid         int64            `json:"valid"`
	Errors        int64            `json:"errors"`
	Codes         map[string]int64 `json:"codes"`
	ErrorsByPhase map[string]int64 `json:"errors_by_phase,omitempty"`
	FirstError    string           `json:"first_error,omitempty"`
	// CommittedInWindow counts the commit statuses (any code) received during
	// the window; ValidInWindow the VALID ones (TPS × Seconds).
	CommittedInWindow int64   `json:"committed_in_window"`
	ValidInWindow     int64   `json:"valid_in_window"`
	Seconds           float64 `json:"seconds"`
	// MinTPS1s and MaxTPS1s are the lowest and highest one-second VALID rates
	// after the first second of the window.
	MinTPS1s float64 `json:"min_tps_1s"`
	MaxTPS1s float64 `json:"max_tps_1s"`
	// Blocks is the number of blocks that committed the window's transactions
	// (highest − lowest block number + 1); TxPerBlock the window's commits per
	// block.
	Blocks     int64   `json:"blocks"`
	TxPerBlock float64 `json:"tx_per_block"`
	Clients    int     `json:"clients"`
	Conns      int     `json:"conns"`
	HotPct     float64 `json:"hot_pct"`
	HotKeys    int     `json:"hot_keys"`
	// CommitStatus is GatewayConfig.CommitStatus: "rpc" or "events".
	CommitStatus string `json:"commit_status"`
	Chaincode    string `json:"chaincode"`
	// CPUPerTxUs is the CPU time (user+system) this process and Processes used
	// during the window, per transaction committed in it (any code). The
	// client's signing (proposal, transaction, commit-status request: three
	// ECDSA signatures per transaction inside the fabric-gateway client) is
	// part of it, as it is part of any real application.
	CPUPerTxUs float64 `json:"cpu_us_per_tx"`
	// CPUByRoleUs splits CPUPerTxUs by process role ("bench" is this process).
	CPUByRoleUs map[string]float64 `json:"cpu_us_per_tx_by_role,omitempty"`
	// CPUCores is that CPU time divided by the window.
	CPUCores float64 `json:"cpu_cores"`
}

// Transaction phases of GatewayResult.ErrorsByPhase.
const (
	phaseEndorse = "endorse"
	phaseSubmit  = "submit"
	phaseStatus  = "commit_status"
	phaseOther   = "other"
)

// gatewayRun is the shared state of one run.
type gatewayRun struct {
	cfg     GatewayConfig
	prefix  string // makes asset IDs unique across runs on one network
	next    atomic.Int64
	began   time.Time
	end     time.Time // end of the window: no submission starts after it
	seconds int

	errOnce  sync.Once
	firstErr string
}

// gatewayStats is what one client records; merged after the run.
type gatewayStats struct {
	submitted, committed, valid int64
	codes                       map[string]int64
	errs                        map[string]int64
	// Window only.
	lats                  []float64
	perSecond             []int64 // VALID commits per second of the window
	inWindow, validWindow int64
	minBlock, maxBlock    uint64
	haveBlock             bool
}

func newGatewayStats(seconds int) *gatewayStats {
	return &gatewayStats{codes: map[string]int64{}, errs: map[string]int64{}, perSecond: make([]int64, seconds)}
}

// Gateway drives a network through the fabric-gateway client and measures
// committed transactions/s, submit-to-commit latency, validation codes and
// CPU per transaction.
func Gateway(ctx context.Context, cfg GatewayConfig) (*GatewayResult, error) {
	if cfg.Info == nil || len(cfg.Info.Organizations) == 0 {
		return nil, errors.New("no organisation in the network description")
	}
	if cfg.Chaincode == "" {
		cfg.Chaincode = "basic"
	}
	if cfg.User == "" {
		cfg.User = "user1"
	}
	if cfg.Clients <= 0 {
		cfg.Clients = DefaultGatewayClients
	}
	if cfg.Conns <= 0 {
		cfg.Conns = DefaultGatewayConns
	}
	cfg.Conns = min(cfg.Conns, cfg.Clients)
	if cfg.HotKeys <= 0 {
		cfg.HotKeys = DefaultHotKeys
	}
	if cfg.HotPct < 0 || cfg.HotPct > 100 {
		return nil, fmt.Errorf("hot-key percentage %g is outside 0–100", cfg.HotPct)
	}
	switch cfg.CommitStatus {
	case "":
		cfg.CommitStatus = CommitByRPC
	case CommitByRPC, CommitByEvents:
	default:
		return nil, fmt.Errorf("commit status %q: want %q or %q", cfg.CommitStatus, CommitByRPC, CommitByEvents)
	}
	if cfg.Warmup < 0 {
		cfg.Warmup = 0
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	r := &gatewayRun{cfg: cfg, prefix: "gw-" + hex.EncodeToString(id[:]) + "-"}

	conns := make([]*gatewayConn, cfg.Conns)
	for i := range conns {
		org, peer := connTarget(cfg.Info, i)
		gw, conn, err := localnet.ConnectGateway(cfg.Info, org, peer, cfg.User)
		if err != nil {
			return nil, fmt.Errorf("connect to the gateway of %s: %w", cfg.Info.Organizations[org].Peers[peer].Name, err)
		}
		defer conn.Close()
		defer gw.Close()
		network := gw.GetNetwork(cfg.Info.Channel)
		conns[i] = &gatewayConn{network: network, contract: network.GetContract(cfg.Chaincode)}
	}
	// The event streams live until every client is done; their readers are
	// waited for.
	eventsCtx, stopEvents := context.WithCancel(ctx)
	var readers sync.WaitGroup
	defer func() {
		stopEvents()
		readers.Wait()
	}()
	// One transaction per connection before anything else: it opens the
	// connections and fails fast with the gateway's message. With events, the
	// connection's stream starts after that transaction's block, so no block
	// a client's transaction can land in is missed.
	for i, c := range conns {
		fn, args := r.txFor(r.prefix+"pre-"+strconv.Itoa(i), false)
		block, err := submitAndWait(ctx, c.contract, fn, args)
		if err != nil {
			return nil, fmt.Errorf("first transaction through connection %d: %w", i, err)
		}
		if cfg.CommitStatus == CommitByEvents {
			blocks, err := c.network.FilteredBlockEvents(eventsCtx, client.WithStartBlock(block+1))
			if err != nil {
				return nil, fmt.Errorf("filtered block events of connection %d: %w", i, err)
			}
			c.events = newTxEvents()
			readers.Add(1)
			go func() {
				defer readers.Done()
				c.events.run(blocks)
			}()
		}
	}
	if cfg.HotPct > 0 {
		fmt.Fprintf(cfg.Progress, "» creating %d hot assets\n", cfg.HotKeys)
		if err := r.createHotAssets(ctx, conns); err != nil {
			return nil, err
		}
	}

	r.seconds = int(math.Ceil(cfg.Duration.Seconds())) + 1
	start := time.Now()
	r.began = start.Add(cfg.Warmup)
	r.end = r.began.Add(cfg.Duration)
	runCtx, cancel := context.WithDeadline(ctx, r.end.Add(drainTimeout))
	defer cancel()

	// CPU is read at the edges of the window by a timer goroutine.
	type cpuSample struct {
		times []time.Duration
		ok    bool
	}
	cpuAt := make(chan cpuSample, 2)
	go func() {
		for _, at := range []time.Time{r.began, r.end} {
			select {
			case <-time.After(time.Until(at)):
				t, ok := cpuByProcess(pidsOf(cfg.Processes))
				cpuAt <- cpuSample{t, ok}
			case <-runCtx.Done():
				close(cpuAt)
				return
			}
		}
		close(cpuAt)
	}()

	fmt.Fprintf(cfg.Progress, "» %d clients submitting over %d gateway connections (commit status by %s): %s warm-up, %s measured\n", cfg.Clients, cfg.Conns, cfg.CommitStatus, cfg.Warmup, cfg.Duration)
	stats := make([]*gatewayStats, cfg.Clients)
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		stats[c] = newGatewayStats(r.seconds)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(c), uint64(start.UnixNano())))
			r.client(runCtx, conns[c%len(conns)], rng, stats[c])
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := r.result(stats)
	var samples []cpuSample
	for s := range cpuAt {
		samples = append(samples, s)
	}
	if len(samples) == 2 && samples[0].ok && samples[1].ok && len(cfg.Processes) > 0 && res.CommittedInWindow > 0 {
		var cpu time.Duration
		res.CPUByRoleUs, cpu = cpuPerRole(cfg.Processes, samples[0].times, samples[1].times, res.CommittedInWindow)
		res.CPUPerTxUs = float64(cpu/time.Microsecond) / float64(res.CommittedInWindow)
		res.CPUCores = cpu.Seconds() / res.Seconds
	}
	return res, nil
}

// gatewayConn is one gateway connection the clients share.
type gatewayConn struct {
	network  *client.Network
	contract *client.Contract
	// events is the connection's filtered block event stream, with
	// CommitByEvents; nil otherwise.
	events *txEvents
}

// connTarget is the organisation and peer index that gateway connection i
// goes to: organisations in turn, then their peers in turn.
func connTarget(info *localnet.Info, i int) (org, peer int) {
	org = i % len(info.Organizations)
	n := len(info.Organizations[org].Peers)
	if n == 0 {
		return org, 0
	}
	return org, (i / len(info.Organizations)) % n
}

// assetArgs are the arguments of CreateAsset and UpdateAsset of the sample
// contract for asset id.
func assetArgs(id string) []string {
	return []string{id, "blue", "5", "cairn-bench", "300"}
}

// txFor is the function and arguments of a transaction on key id: a fresh key
// is written without being read; a hot one is read and written, so concurrent
// transactions on it conflict.
func (r *gatewayRun) txFor(id string, hot bool) (string, []string) {
	if r.cfg.Chaincode == "shimcheck" {
		if hot {
			return "PutGet", []string{id, putValue}
		}
		return FunctionPut, []string{id, putValue}
	}
	if hot {
		return "UpdateAsset", assetArgs(id)
	}
	return "CreateAsset", assetArgs(id)
}

func (r *gatewayRun) hotID(i int) string { return r.prefix + "hot-" + strconv.Itoa(i) }

// createHotAssets creates the hot assets, in parallel, and waits for them.
func (r *gatewayRun) createHotAssets(ctx context.Context, conns []*gatewayConn) error {
	errs := make([]error, r.cfg.HotKeys)
	var wg sync.WaitGroup
	for i := range r.cfg.HotKeys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn, args := r.txFor(r.hotID(i), false)
			_, errs[i] = submitAndWait(ctx, conns[i%len(conns)].contract, fn, args)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("create hot assets: %w", err)
	}
	return nil
}

// submitAndWait submits one transaction and asks for its commit status; it
// returns the transaction's block.
func submitAndWait(ctx context.Context, c *client.Contract, fn string, args []string) (uint64, error) {
	_, commit, err := c.SubmitAsyncWithContext(ctx, fn, client.WithArguments(args...))
	if err != nil {
		return 0, err
	}
	st, err := commit.StatusWithContext(ctx)
	if err != nil {
		return 0, err
	}
	if !st.Successful {
		return 0, fmt.Errorf("transaction %s committed with code %s", st.TransactionID, st.Code)
	}
	return st.BlockNumber, nil
}

// submit runs one transaction through gc and returns its validation code and
// block, learnt as cfg.CommitStatus says.
func (r *gatewayRun) submit(ctx context.Context, gc *gatewayConn, fn string, args []string) (pb.TxValidationCode, uint64, error) {
	if gc.events == nil {
		_, commit, err := gc.contract.SubmitAsyncWithContext(ctx, fn, client.WithArguments(args...))
		if err != nil {
			return 0, 0, err
		}
		st, err := commit.StatusWithContext(ctx)
		if err != nil {
			return 0, 0, err
		}
		return st.Code, st.BlockNumber, nil
	}
	// SubmitAsync's steps, with the transaction ID registered before the
	// transaction can reach an orderer.
	prop, err := gc.contract.NewProposal(fn, client.WithArguments(args...))
	if err != nil {
		return 0, 0, err
	}
	id := prop.TransactionID()
	done := gc.events.register(id)
	tx, err := prop.EndorseWithContext(ctx)
	if err == nil {
		_, err = tx.SubmitWithContext(ctx)
	}
	if err != nil {
		gc.events.forget(id)
		return 0, 0, err
	}
	select {
	case o := <-done:
		return o.code, o.block, o.err
	case <-ctx.Done():
		gc.events.forget(id)
		return 0, 0, ctx.Err()
	}
}

// pickHot reports whether the next transaction updates a hot key, and which:
// with probability pct/100, key rng.IntN(keys).
func pickHot(rng *mrand.Rand, pct float64, keys int) (bool, int) {
	if pct <= 0 || keys <= 0 || rng.Float64()*100 >= pct {
		return false, 0
	}
	return true, rng.IntN(keys)
}

// client submits one transaction at a time until the end of the window, then
// waits for the last one's status.
func (r *gatewayRun) client(ctx context.Context, gc *gatewayConn, rng *mrand.Rand, st *gatewayStats) {
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(r.end) {
			return
		}
		hot, k := pickHot(rng, r.cfg.HotPct, r.cfg.HotKeys)
		var id string
		if hot {
			id = r.hotID(k)
		} else {
			id = r.prefix + strconv.FormatInt(r.next.Add(1), 10)
		}
		fn, args := r.txFor(id, hot)
		st.submitted++
		code, block, err := r.submit(ctx, gc, fn, args)
		now := time.Now()
		if err != nil {
			r.fail(st, err)
			continue
		}
		st.record(r, code, block, t0, now)
	}
}

// record counts one commit status received at now for a transaction whose
// submission started at t0.
func (st *gatewayStats) record(r *gatewayRun, code pb.TxValidationCode, block uint64, t0, now time.Time) {
	st.committed++
	st.codes[code.String()]++
	valid := code == pb.TxValidationCode_VALID
	if valid {
		st.valid++
	}
	if now.Before(r.began) || now.After(r.end) {
		return
	}
	st.inWindow++
	st.lats = append(st.lats, float64(now.Sub(t0))/float64(time.Millisecond))
	if !st.haveBlock || block < st.minBlock {
		st.minBlock = block
	}
	if !st.haveBlock || block > st.maxBlock {
		st.maxBlock = block
	}
	st.haveBlock = true
	if valid {
		st.validWindow++
		if sec := int(now.Sub(r.began) / time.Second); sec < len(st.perSecond) {
			st.perSecond[sec]++
		}
	}
}

func (r *gatewayRun) fail(st *gatewayStats, err error) {
	st.errs[errorPhase(err)]++
	r.errOnce.Do(func() { r.firstErr = err.Error() })
}

// errorPhase names the phase a fabric-gateway client error comes from.
func errorPhase(err error) string {
	var (
		endorse *client.EndorseError
		submit  *client.SubmitError
		status  *client.CommitStatusError
	)
	switch {
	case errors.As(err, &endorse):
		return phaseEndorse
	case errors.As(err, &submit):
		return phaseSubmit
	case errors.As(err, &status), errors.Is(err, errEventsEnded):
		return phaseStatus
	}
	return phaseOther
}

// result merges the clients' statistics.
func (r *gatewayRun) result(stats []*gatewayStats) *GatewayResult {
	res := &GatewayResult{
		Codes: map[string]int64{}, ErrorsByPhase: map[string]int64{},
		Seconds: r.cfg.Duration.Seconds(), FirstError: r.firstErr,
		Clients: r.cfg.Clients, Conns: r.cfg.Conns, HotPct: r.cfg.HotPct,
		CommitStatus: r.cfg.CommitStatus, Chaincode: r.cfg.Chaincode,
	}
	if r.cfg.HotPct > 0 {
		res.HotKeys = r.cfg.HotKeys
	}
	perSecond := make([]int64, r.seconds)
	var lats []float64
	var minBlock, maxBlock uint64
	haveBlock := false
	for _, st := range stats {
		res.Submitted += st.submitted
		res.Committed += st.committed
		res.Valid += st.valid
		for k, n := range st.codes {
			res.Codes[k] += n
		}
		for k, n := range st.errs {
			res.ErrorsByPhase[k] += n
			res.Errors += n
		}
		lats = append(lats, st.lats...)
		for i, n := range st.perSecond {
			perSecond[i] += n
		}
		res.CommittedInWindow += st.inWindow
		res.ValidInWindow += st.validWindow
		if st.haveBlock {
			if !haveBlock || st.minBlock < minBlock {
				minBlock = st.minBlock
			}
			if !haveBlock || st.maxBlock > maxBlock {
				maxBlock = st.maxBlock
			}
			haveBlock = true
		}
	}
	if len(res.ErrorsByPhase) == 0 {
		res.ErrorsByPhase = nil
	}
	if res.Seconds > 0 {
		res.TPS = float64(res.ValidInWindow) / res.Seconds
	}
	if haveBlock {
		res.Blocks = int64(maxBlock-minBlock) + 1
		res.TxPerBlock = float64(res.CommittedInWindow) / float64(res.Blocks)
	}
	sort.Float64s(lats)
	res.P50ms, res.P90ms, res.P99ms = percentile(lats, 0.50), percentile(lats, 0.90), percentile(lats, 0.99)
	if n := len(lats); n > 0 {
		res.MaxMs = lats[n-1]
	}
	res.MinTPS1s, res.MaxTPS1s = secondRange(perSecond, int(r.cfg.Duration/time.Second))
	return res
}
