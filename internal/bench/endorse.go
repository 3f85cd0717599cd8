package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/envelope"
)

// Defaults of EndorseConfig.
const (
	DefaultEndorseClients = 64
	DefaultEndorseConns   = 2
	// DefaultEndorseRate is the proposals/s the pre-signed pool is sized for
	// when neither Presign nor Rate is given.
	DefaultEndorseRate = 8000
	// DefaultVerifyEvery: one response in this many has its endorsement
	// signature and payload checked in full.
	DefaultVerifyEvery = 100
)

// Functions an endorsement benchmark can invoke (EndorseConfig.Function).
const (
	// FunctionCreateAsset is CreateAsset of the sample contract basic
	// (fabric-contract-api-go): one GetState of the fresh asset ID, one
	// PutState, one event.
	FunctionCreateAsset = "CreateAsset"
	// FunctionPut is Put of the plain-shim chaincode shimcheck: one PutState
	// of a fresh key and nothing else, the "contract writing one key".
	FunctionPut = "Put"
)

// DefaultFunction is the function a benchmark invokes on chaincode cc when
// EndorseConfig.Function is empty: Put for shimcheck, else CreateAsset.
func DefaultFunction(cc string) string {
	if cc == "shimcheck" {
		return FunctionPut
	}
	return FunctionCreateAsset
}

// EndorseConfig configures an endorsement benchmark: proposals invoking
// CreateAsset of the sample contract, or Put of shimcheck (one fresh key
// written each), sent to one peer's Endorser.ProcessProposal.
type EndorseConfig struct {
	// Peer is the Endorser address, ServerName the name its TLS certificate
	// holds ("" means the host of Peer), TLSRootCert the PEM file of its TLS CA.
	Peer, ServerName, TLSRootCert string
	// Channel and Chaincode the proposals invoke ("" means basic).
	Channel, Chaincode string
	// Function is what each proposal invokes with a fresh key:
	// FunctionCreateAsset (CreateAsset id color size owner appraisedValue of
	// the sample contract) or FunctionPut (Put key value of shimcheck); ""
	// means DefaultFunction(Chaincode).
	Function string
	// MSPID, CertFile and KeyFile name the client identity that signs the
	// proposals (it must satisfy the channel's peer/Propose ACL).
	MSPID, CertFile, KeyFile string
	// Clients is the number of concurrent callers, each with one proposal in
	// flight at a time.
	Clients int
	// Conns is the number of gRPC connections the clients are spread over.
	Conns int
	// Duration of the measured run.
	Duration time.Duration
	// Presign is how many proposals are signed, on every core, before the
	// clock starts. 0 sizes the pool for Rate proposals/s over Duration, plus
	// 10 %. Should the pool run dry, clients sign live (EndorseResult.SignedLive).
	Presign int
	// Rate is the expected proposals/s, used only to size the pool when
	// Presign is 0; 0 means DefaultEndorseRate.
	Rate int
	// VerifyEvery: one response in VerifyEvery has its endorsement verified in
	// full (endorser signature over payload ‖ endorser, proposal hash, one
	// write in the chaincode's namespace), by the calling client during the
	// run; the others are checked for status 200 and an endorsement present.
	// 1 verifies all; 0 means DefaultVerifyEvery.
	VerifyEvery int
	// Progress, if set, receives a line when pre-signing starts and ends.
	Progress io.Writer
	// Processes are the peer and chaincode processes on this machine whose
	// CPU time counts, with the benchmark's own, towards CPUPerProposalUs.
	Processes []Process
}

// Process is a process whose CPU time a benchmark measures; Role names it in
// the per-role breakdown (e.g. peer, chaincode).
type Process struct {
	Role string
	PID  int
}

// EndorseResult is what `cairn bench endorse --json` prints.
type EndorseResult struct {
	// Chaincode and Function say what every proposal invoked.
	Chaincode string `json:"chaincode"`
	Function  string `json:"function"`
	// TPS counts proposals endorsed (status 200 with an endorsement) during
	// the measured window, per second.
	TPS   float64 `json:"tps"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	// Sent, Endorsed and Errors count the whole run, including the proposals
	// in flight at the deadline. Errors are gRPC failures, responses other
	// than 200 and endorsements that failed verification.
	Sent     int64 `json:"sent"`
	Endorsed int64 `json:"endorsed"`
	Errors   int64 `json:"errors"`
	// FirstError describes the first error seen, if any.
	FirstError string `json:"first_error,omitempty"`
	// Verified counts the endorsements checked in full (see VerifyEvery).
	Verified    int64   `json:"verified"`
	VerifyEvery int     `json:"verify_every"`
	Seconds     float64 `json:"seconds"`
	P90ms       float64 `json:"p90_ms"`
	MaxMs       float64 `json:"max_ms"`
	// MinTPS1s and MaxTPS1s are the lowest and highest one-second rates after
	// the first second of the window.
	MinTPS1s       float64 `json:"min_tps_1s"`
	MaxTPS1s       float64 `json:"max_tps_1s"`
	Presigned      int     `json:"presigned"`
	PresignSeconds float64 `json:"presign_seconds"`
	SignedLive     int64   `json:"signed_live"`
	Clients        int     `json:"clients"`
	Conns          int     `json:"conns"`
	ProposalBytes  int     `json:"proposal_bytes"`
	// CPUPerProposalUs is the CPU time (user+system) the benchmark process and
	// the processes in PIDs used during the measured window, per proposal
	// endorsed in it. 0 when it could not be measured (not Linux, no PIDs).
	CPUPerProposalUs float64 `json:"cpu_us_per_proposal"`
	// CPUByRoleUs splits CPUPerProposalUs by process role; "bench" is this
	// process (pre-signed proposals: gRPC client, sampled verification).
	CPUByRoleUs map[string]float64 `json:"cpu_us_per_proposal_by_role,omitempty"`
	// CPUCores is that CPU time divided by the window: how many cores the
	// run kept busy.
	CPUCores float64 `json:"cpu_cores"`
}

// endorseRun is the shared state of one endorsement run.
type endorseRun struct {
	cfg     EndorseConfig
	signer  *crypto.SigningIdentity
	creator []byte
	// prefix makes this run's asset IDs unique across runs on one network.
	prefix string
	check  *endorsementChecker

	pool       []*pb.SignedProposal
	next       atomic.Int64
	signedLive atomic.Int64

	began    time.Time
	deadline time.Time

	sent, endorsed, errs, verified, responses atomic.Int64
	errOnce                                   sync.Once
	firstErr                                  string
}

// clientStats is what one client records; merged after the run.
type clientStats struct {
	lats      []float64
	perSecond []int64
	inWindow  int64
}

// Endorse drives one peer's Endorser with pre-signed proposals from many
// concurrent callers and measures endorsements/s, latency and CPU per
// proposal.
func Endorse(ctx context.Context, cfg EndorseConfig) (*EndorseResult, error) {
	if cfg.Peer == "" {
		return nil, errors.New("no peer address")
	}
	if cfg.Chaincode == "" {
		cfg.Chaincode = "basic"
	}
	if cfg.Function == "" {
		cfg.Function = DefaultFunction(cfg.Chaincode)
	}
	if cfg.Function != FunctionCreateAsset && cfg.Function != FunctionPut {
		return nil, fmt.Errorf("function %q: the benchmark invokes %s or %s", cfg.Function, FunctionCreateAsset, FunctionPut)
	}
	if cfg.Clients <= 0 {
		cfg.Clients = DefaultEndorseClients
	}
	if cfg.Conns <= 0 {
		cfg.Conns = DefaultEndorseConns
	}
	cfg.Conns = min(cfg.Conns, cfg.Clients)
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultEndorseRate
	}
	if cfg.Presign <= 0 {
		cfg.Presign = int(float64(cfg.Rate)*cfg.Duration.Seconds()*1.1) + cfg.Clients
	}
	if cfg.VerifyEvery <= 0 {
		cfg.VerifyEvery = DefaultVerifyEvery
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	signer, err := loadSigner(cfg.MSPID, cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := comm.ClientTLS([]string{cfg.TLSRootCert}, "", "", cfg.ServerName)
	if err != nil {
		return nil, fmt.Errorf("peer TLS: %w", err)
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	r := &endorseRun{
		cfg: cfg, signer: signer, creator: signer.Serialize(),
		prefix: "bench-" + hex.EncodeToString(id[:]) + "-",
		check:  newEndorsementChecker(cfg.Chaincode),
	}

	conns := make([]*grpc.ClientConn, cfg.Conns)
	for i := range conns {
		if conns[i], err = comm.Dial(cfg.Peer, tlsCfg); err != nil {
			return nil, err
		}
		defer conns[i].Close()
	}
	// One proposal per connection before anything else: it opens the
	// connections and fails fast, with the peer's message, if the chaincode
	// does not endorse.
	for i, conn := range conns {
		if err := r.preflight(ctx, conn, i); err != nil {
			return nil, err
		}
	}

	fmt.Fprintf(cfg.Progress, "» pre-signing %d proposals on %d cores\n", cfg.Presign, runtime.GOMAXPROCS(0))
	presignStart := time.Now()
	if err := r.presign(ctx, cfg.Presign); err != nil {
		return nil, err
	}
	presignTime := time.Since(presignStart)
	fmt.Fprintf(cfg.Progress, "» pre-signed in %.1fs\n", presignTime.Seconds())
	// The pool's garbage (proposal and header structs) would otherwise be
	// collected during the run, on the run's CPU.
	runtime.GC()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cpuStart, cpuOK := cpuByProcess(pidsOf(cfg.Processes))
	r.began = time.Now()
	r.deadline = r.began.Add(cfg.Duration)
	cpuEnd := make(chan []time.Duration, 1)
	go func() {
		select {
		case <-time.After(cfg.Duration):
			if t, ok := cpuByProcess(pidsOf(cfg.Processes)); ok {
				cpuEnd <- t
			}
		case <-runCtx.Done():
		}
		close(cpuEnd)
	}()

	seconds := int(math.Ceil(cfg.Duration.Seconds())) + 1
	stats := make([]clientStats, cfg.Clients)
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[c]
			st.perSecond = make([]int64, seconds)
			r.client(runCtx, pb.NewEndorserClient(conns[c%len(conns)]), st)
		}()
	}
	wg.Wait()
	elapsed := min(time.Since(r.began), cfg.Duration)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	res := &EndorseResult{
		Chaincode: cfg.Chaincode, Function: cfg.Function,
		Sent: r.sent.Load(), Endorsed: r.endorsed.Load(), Errors: r.errs.Load(), FirstError: r.firstErr,
		Verified: r.verified.Load(), VerifyEvery: cfg.VerifyEvery, Seconds: elapsed.Seconds(),
		Presigned: len(r.pool), PresignSeconds: presignTime.Seconds(), SignedLive: r.signedLive.Load(),
		Clients: cfg.Clients, Conns: len(conns),
	}
	if len(r.pool) > 0 {
		res.ProposalBytes = proto.Size(r.pool[0])
	}
	lats, perSecond, inWindow := mergeStats(stats, seconds)
	res.TPS = float64(inWindow) / elapsed.Seconds()
	if end, ok := <-cpuEnd; ok && cpuOK && len(cfg.Processes) > 0 && inWindow > 0 {
		var cpu time.Duration
		res.CPUByRoleUs, cpu = cpuPerRole(cfg.Processes, cpuStart, end, inWindow)
		res.CPUPerProposalUs = float64(cpu/time.Microsecond) / float64(inWindow)
		res.CPUCores = cpu.Seconds() / elapsed.Seconds()
	}
	res.MinTPS1s, res.MaxTPS1s = secondRange(perSecond, int(elapsed/time.Second))
	res.P50ms, res.P90ms, res.P99ms = percentile(lats, 0.50), percentile(lats, 0.90), percentile(lats, 0.99)
	if n := len(lats); n > 0 {
		res.MaxMs = lats[n-1]
	}
	return res, nil
}

func loadSigner(mspID, certFile, keyFile string) (*crypto.SigningIdentity, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	key, err := crypto.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	return &crypto.SigningIdentity{MSPID: mspID, CertPEM: certPEM, Key: key}, nil
}

// mergeStats joins the clients' latencies (sorted) and per-second counts.
func mergeStats(stats []clientStats, seconds int) (lats []float64, perSecond []int64, inWindow int64) {
	perSecond = make([]int64, seconds)
	for _, st := range stats {
		lats = append(lats, st.lats...)
		for i, n := range st.perSecond {
			if i < seconds {
				perSecond[i] += n
			}
		}
		inWindow += st.inWindow
	}
	sort.Float64s(lats)
	return lats, perSecond, inWindow
}

// createAssetArgs are the arguments of the i-th proposal of a run: the sample
// contract's CreateAsset with a fresh asset ID, so that each proposal reads
// one absent key and writes it.
func createAssetArgs(prefix string, i int) [][]byte {
	return [][]byte{
		[]byte("CreateAsset"), []byte(prefix + strconv.Itoa(i)),
		[]byte("blue"), []byte("5"), []byte("cairn-bench"), []byte("300"),
	}
}

// putValue is the value Put writes: about the size of the asset basic's
// CreateAsset writes, so the two workloads move similar bytes.
const putValue = `{"Color":"blue","Size":5,"Owner":"cairn-bench","AppraisedValue":300}`

// putArgs are the arguments of the i-th proposal invoking shimcheck's Put:
// a fresh key, written once.
func putArgs(prefix string, i int) [][]byte {
	return [][]byte{[]byte(FunctionPut), []byte(prefix + strconv.Itoa(i)), []byte(putValue)}
}

// args are the arguments of the i-th proposal of the run.
func (r *endorseRun) args(i int) [][]byte {
	if r.cfg.Function == FunctionPut {
		return putArgs(r.prefix, i)
	}
	return createAssetArgs(r.prefix, i)
}

// sign builds and signs the i-th proposal.
func (r *endorseRun) sign(i int) (*pb.SignedProposal, error) {
	prop, _, err := envelope.NewProposal(r.cfg.Channel, r.cfg.Chaincode, r.args(i), nil, r.creator)
	if err != nil {
		return nil, err
	}
	return envelope.SignProposal(prop, r.signer)
}

// presign fills the pool with n signed proposals, using every core.
func (r *endorseRun) presign(ctx context.Context, n int) error {
	r.pool = make([]*pb.SignedProposal, n)
	err := onEveryCore(ctx, n, func(i int) (err error) {
		r.pool[i], err = r.sign(i)
		return err
	})
	if err != nil {
		return fmt.Errorf("pre-sign proposals: %w", err)
	}
	return nil
}

// take returns the next proposal to send: from the pool while it lasts, else
// freshly signed.
func (r *endorseRun) take() (*pb.SignedProposal, error) {
	i := int(r.next.Add(1) - 1)
	if i < len(r.pool) {
		return r.pool[i], nil
	}
	r.signedLive.Add(1)
	return r.sign(i)
}

// preflight sends one proposal, outside the measurement, and checks its
// endorsement in full.
func (r *endorseRun) preflight(ctx context.Context, conn *grpc.ClientConn, n int) error {
	sp, err := r.sign(-1 - n) // negative IDs: never in the pool
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := pb.NewEndorserClient(conn).ProcessProposal(cctx, sp)
	if err != nil {
		return fmt.Errorf("first proposal to %s: %w", r.cfg.Peer, err)
	}
	if err := r.check.full(sp, resp); err != nil {
		return fmt.Errorf("first proposal to %s (%s on %s): %w", r.cfg.Peer, r.cfg.Chaincode, r.cfg.Channel, err)
	}
	return nil
}

// client sends one proposal at a time until the deadline.
func (r *endorseRun) client(ctx context.Context, ec pb.EndorserClient, st *clientStats) {
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(r.deadline) {
			return
		}
		sp, err := r.take()
		if err != nil {
			r.fail(err)
			return
		}
		r.sent.Add(1)
		resp, err := ec.ProcessProposal(ctx, sp)
		now := time.Now()
		if err != nil {
			r.fail(err)
			if ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		if r.responses.Add(1)%int64(r.cfg.VerifyEvery) == 0 {
			err = r.check.full(sp, resp)
			r.verified.Add(1)
		} else {
			err = checkStatus(resp)
		}
		if err != nil {
			r.fail(err)
			continue
		}
		r.endorsed.Add(1)
		at := now.Sub(r.began)
		if at <= r.cfg.Duration {
			st.inWindow++
			st.lats = append(st.lats, float64(now.Sub(t0))/float64(time.Millisecond))
			if sec := int(at / time.Second); sec < len(st.perSecond) {
				st.perSecond[sec]++
			}
		}
	}
}

func (r *endorseRun) fail(err error) {
	r.errs.Add(1)
	r.errOnce.Do(func() { r.firstErr = err.Error() })
}

// checkStatus is the check every response gets: status 200 with an endorsement.
func checkStatus(resp *pb.ProposalResponse) error {
	if s := resp.GetResponse().GetStatus(); s != 200 {
		return fmt.Errorf("status %d: %s", s, resp.GetResponse().GetMessage())
	}
	if len(resp.GetEndorsement().GetSignature()) == 0 {
		return errors.New("status 200 without an endorsement")
	}
	return nil
}

// endorsementChecker verifies endorsements in full; it caches the endorsers'
// public keys. Safe for concurrent use.
type endorsementChecker struct {
	namespace string
	mu        sync.Mutex
	keys      map[string]*ecdsa.PublicKey // serialized endorser -> key
}

func newEndorsementChecker(namespace string) *endorsementChecker {
	return &endorsementChecker{namespace: namespace, keys: map[string]*ecdsa.PublicKey{}}
}

// full checks that resp endorses sp: status 200, the endorser's signature over
// payload ‖ endorser, the payload bound to sp's proposal hash, and a
// read-write set writing exactly one key in the chaincode's namespace.
func (c *endorsementChecker) full(sp *pb.SignedProposal, resp *pb.ProposalResponse) error {
	if err := checkStatus(resp); err != nil {
		return err
	}
	e := resp.Endorsement
	pub, err := c.key(e.Endorser)
	if err != nil {
		return err
	}
	msg := make([]byte, 0, len(resp.Payload)+len(e.Endorser))
	msg = append(append(msg, resp.Payload...), e.Endorser...)
	if err := crypto.Verify(pub, msg, e.Signature); err != nil {
		return fmt.Errorf("endorsement signature: %w", err)
	}
	prop, err := envelope.UnpackProposal(sp)
	if err != nil {
		return err
	}
	want, err := prop.Hash()
	if err != nil {
		return err
	}
	prp := &pb.ProposalResponsePayload{}
	if err := proto.Unmarshal(resp.Payload, prp); err != nil {
		return fmt.Errorf("proposal response payload: %w", err)
	}
	if !bytes.Equal(prp.ProposalHash, want) {
		return errors.New("endorsement is bound to another proposal")
	}
	action := &pb.ChaincodeAction{}
	if err := proto.Unmarshal(prp.Extension, action); err != nil {
		return fmt.Errorf("chaincode action: %w", err)
	}
	if s := action.GetResponse().GetStatus(); s != 200 {
		return fmt.Errorf("endorsed chaincode response has status %d", s)
	}
	writes, err := writesIn(action.Results, c.namespace)
	if err != nil {
		return err
	}
	if writes != 1 {
		return fmt.Errorf("endorsement writes %d keys in %s, want 1", writes, c.namespace)
	}
	return nil
}

// key returns the public key of a serialized endorser identity.
func (c *endorsementChecker) key(endorser []byte) (*ecdsa.PublicKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[string(endorser)]; ok {
		return k, nil
	}
	sid := &mspproto.SerializedIdentity{}
	if err := proto.Unmarshal(endorser, sid); err != nil {
		return nil, fmt.Errorf("endorser identity: %w", err)
	}
	cert, err := crypto.ParseCertificatePEM(sid.IdBytes)
	if err != nil {
		return nil, fmt.Errorf("endorser certificate: %w", err)
	}
	k, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("endorser key is %T, not ECDSA", cert.PublicKey)
	}
	c.keys[string(endorser)] = k
	return k, nil
}

// writesIn counts the writes of a marshalled TxReadWriteSet in namespace ns.
func writesIn(results []byte, ns string) (int, error) {
	txrw := &rwset.TxReadWriteSet{}
	if err := proto.Unmarshal(results, txrw); err != nil {
		return 0, fmt.Errorf("read-write set: %w", err)
	}
	n := 0
	for _, nsrw := range txrw.NsRwset {
		if nsrw.Namespace != ns {
			continue
		}
		kv := &kvrwset.KVRWSet{}
		if err := proto.Unmarshal(nsrw.Rwset, kv); err != nil {
			return 0, fmt.Errorf("read-write set of %s: %w", ns, err)
		}
		n += len(kv.Writes)
	}
	return n, nil
}
