package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/internal/proccpu"
	"github.com/cairn-ledger/cairn/peer/internal/channel"
	"github.com/cairn-ledger/cairn/peer/internal/ledger"
	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
	"github.com/cairn-ledger/cairn/peer/internal/puller"
	"github.com/cairn-ledger/cairn/peer/internal/validator"
)

// Bench modes: what BenchCommitter times.
const (
	// BenchModeCommit feeds the prepared blocks straight into the channel's
	// validate-and-commit pipeline: what a committing peer's throughput is.
	BenchModeCommit = "commit"
	// BenchModeCatchUp has a fresh peer channel pull the chain from an
	// in-process orderer over TLS, verify each block and commit it.
	BenchModeCatchUp = "catchup"
)

// BenchConfig configures BenchCommitter.
type BenchConfig struct {
	// Mode is BenchModeCommit or BenchModeCatchUp (the default).
	Mode string
	// Txs is the number of transactions in the measured chain (default 100,000).
	Txs int
	// BlockSize is the number of transactions per block (default 500).
	BlockSize int
	// Dir holds the crypto material and ledgers; empty means a temporary
	// folder removed afterwards.
	Dir string
	// NoSync skips fsync on commit, as peer.yaml's noSync (default: fsync, as a
	// production peer does).
	NoSync bool
	// Logger receives the channel's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultBenchConfig is the catch-up run of a fresh peer over a 100,000
// transaction chain in blocks of 500.
func DefaultBenchConfig() BenchConfig {
	return BenchConfig{Mode: BenchModeCatchUp, Txs: 100_000, BlockSize: 500}
}

// Validate reports the first unusable setting.
func (c BenchConfig) Validate() error {
	if c.Txs < 1 {
		return fmt.Errorf("bench: txs must be at least 1, not %d", c.Txs)
	}
	if c.BlockSize < 1 {
		return fmt.Errorf("bench: block size must be at least 1, not %d", c.BlockSize)
	}
	switch c.Mode {
	case "", BenchModeCommit, BenchModeCatchUp:
	default:
		return fmt.Errorf("bench: mode must be %q or %q, not %q", BenchModeCommit, BenchModeCatchUp, c.Mode)
	}
	return nil
}

// BenchResult is one measured run.
type BenchResult struct {
	// Mode is what was measured (BenchModeCommit or BenchModeCatchUp).
	Mode string `json:"mode"`
	// TPS is transactions committed per second.
	TPS float64 `json:"tps"`
	// Blocks and Txs count the measured blocks and their transactions.
	Blocks int `json:"blocks"`
	Txs    int `json:"txs"`
	// Seconds is the measured time.
	Seconds float64 `json:"seconds"`
	// CPUSeconds is the CPU time the whole process used meanwhile (0 where
	// not measured). On a shared machine txs/CPUSeconds is the steadier
	// figure: what one fully available core would sustain.
	CPUSeconds float64 `json:"cpu_seconds"`
}

// CPUMicrosPerTx is the CPU time spent per transaction, 0 if not measured.
func (r BenchResult) CPUMicrosPerTx() float64 {
	if r.Txs == 0 {
		return 0
	}
	return r.CPUSeconds * 1e6 / float64(r.Txs)
}

// BlocksPerSecond is the block rate of the run.
func (r BenchResult) BlocksPerSecond() float64 {
	if r.Seconds == 0 {
		return 0
	}
	return float64(r.Blocks) / r.Seconds
}

// BenchCommitter measures a committing peer. It builds (untimed) a
// two-organisation channel, chaincode basic defined with the endorsement
// policy AND('Org1MSP.peer','Org2MSP.peer'), and cfg.Txs transactions, each
// signed by an Org1 client and endorsed by a peer of each organisation,
// writing a distinct key, cut into blocks of cfg.BlockSize and signed by an
// orderer identity. In commit mode it times a new channel on a fresh LevelDB
// ledger validating (signatures, endorsement policy, MVCC) and committing
// those blocks, handed over already decoded; in catch-up mode the new channel
// pulls them over TLS from an in-process orderer through the peer's real
// path, puller (block verification) included.
func BenchCommitter(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	chain, err := NewBenchChain(ctx, cfg)
	if err != nil {
		return BenchResult{}, err
	}
	defer chain.Close()
	if cfg.Mode == BenchModeCommit {
		return chain.Commit(ctx)
	}
	return chain.Replay(ctx)
}

// BenchChain is a prepared chain and the in-process orderer serving it;
// Replay and Commit may run several times, one at a time. Close stops the orderer and
// removes the temporary folder it made.
type BenchChain struct {
	cfg       BenchConfig
	dir       string
	removeDir bool
	genesis   *cb.Block
	setup     uint64   // blocks 1..setup define the chaincode
	blocks    [][]byte // marshalled blocks 1.., as the orderer delivers them
	txs       int
	peer      *crypto.SigningIdentity
	peerTLS   tls.Certificate
	server    *grpc.Server
	served    chan struct{}
	replays   int
}

// NewBenchChain builds the chain of a run and starts serving it.
func NewBenchChain(ctx context.Context, cfg BenchConfig) (_ *BenchChain, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &BenchChain{cfg: cfg, dir: cfg.Dir}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "cairn-bench-committer-"); err != nil {
			return nil, err
		}
		c.removeDir = true
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench orderer listener: %w", err)
	}
	nw := netconfig.Default()
	nw.OrdererOrgs[0].Orderers[0].Port = lis.Addr().(*net.TCPAddr).Port
	nw.PeerOrgs[0].Peers[0].Port = 7051
	nw.PeerOrgs = append(nw.PeerOrgs, netconfig.PeerOrg{
		Name: "Org2", MSPID: "Org2MSP", Domain: "org2.example.com",
		Peers: []netconfig.Node{{Name: "peer0", Host: "127.0.0.1", Port: 9051}},
		Users: []string{"User1"},
	})
	cryptoDir := filepath.Join(c.dir, "crypto")
	if err := cryptogen.Generate(nw, cryptoDir); err != nil {
		lis.Close()
		return nil, err
	}
	if c.genesis, err = channelconfig.Genesis(nw, cryptoDir); err != nil {
		lis.Close()
		return nil, err
	}
	ids, err := loadBenchIdentities(cryptogen.Layout{Root: cryptoDir})
	if err != nil {
		lis.Close()
		return nil, err
	}
	c.peer = ids.peer1
	l := cryptogen.Layout{Root: cryptoDir}
	if c.peerTLS, err = tls.LoadX509KeyPair(l.NodeTLSCertPath(true, "org1.example.com", "peer0.org1.example.com"),
		l.NodeTLSKeyPath(true, "org1.example.com", "peer0.org1.example.com")); err != nil {
		lis.Close()
		return nil, err
	}
	if err := c.build(ctx, ids); err != nil {
		lis.Close()
		return nil, err
	}
	serverTLS, err := comm.ServerTLS(l.NodeTLSCertPath(false, "example.com", "orderer0.example.com"),
		l.NodeTLSKeyPath(false, "example.com", "orderer0.example.com"), nil, false)
	if err != nil {
		lis.Close()
		return nil, err
	}
	if c.server, err = comm.NewGRPCServer(serverTLS); err != nil {
		lis.Close()
		return nil, err
	}
	ab.RegisterAtomicBroadcastServer(c.server, benchOrderer{blocks: c.blocks})
	c.served = make(chan struct{})
	go func() {
		defer close(c.served)
		_ = c.server.Serve(lis) // returns when Close stops the server
	}()
	return c, nil
}

type benchIdentities struct {
	peer1, peer2, user1, orderer *crypto.SigningIdentity
}

func loadBenchIdentities(l cryptogen.Layout) (benchIdentities, error) {
	var ids benchIdentities
	for _, x := range []struct {
		dst        **crypto.SigningIdentity
		mspID, dir string
	}{
		{&ids.peer1, "Org1MSP", l.NodeMSPDir(true, "org1.example.com", "peer0.org1.example.com")},
		{&ids.peer2, "Org2MSP", l.NodeMSPDir(true, "org2.example.com", "peer0.org2.example.com")},
		{&ids.user1, "Org1MSP", l.UserMSPDir(true, "org1.example.com", "User1")},
		{&ids.orderer, "OrdererMSP", l.NodeMSPDir(false, "example.com", "orderer0.example.com")},
	} {
		id, err := crypto.LoadSigningIdentity(x.mspID, x.dir)
		if err != nil {
			return ids, fmt.Errorf("bench identity: %w", err)
		}
		*x.dst = id
	}
	return ids, nil
}

const benchChaincode = "basic"

// build makes the setup blocks (approvals, then the definition of basic),
// simulated by the real _lifecycle on a scratch ledger, and the measured
// blocks.
func (c *BenchChain) build(ctx context.Context, ids benchIdentities) error {
	scratch, err := ledger.Open(ledger.Config{Dir: filepath.Join(c.dir, "scratch"), NoSync: true})
	if err != nil {
		return err
	}
	defer scratch.Close()
	prevHeader := c.genesis.Header
	if _, err := scratch.Commit(c.genesis, []pb.TxValidationCode{pb.TxValidationCode_VALID}); err != nil {
		return err
	}
	appendBlock := func(data [][]byte) error {
		b := block.New(prevHeader.Number+1, block.HeaderHash(prevHeader), data)
		if err := signBenchBlock(b, ids.orderer); err != nil {
			return err
		}
		raw, err := proto.Marshal(b)
		if err != nil {
			return err
		}
		c.blocks = append(c.blocks, raw)
		prevHeader = b.Header
		return nil
	}

	// Setup: both organisations approve, then the definition is committed.
	spe, err := policy.ParseDSL("AND('Org1MSP.peer','Org2MSP.peer')")
	if err != nil {
		return err
	}
	vp, err := proto.Marshal(&pb.ApplicationPolicy{Type: &pb.ApplicationPolicy_SignaturePolicy{SignaturePolicy: spe}})
	if err != nil {
		return err
	}
	approve, err := proto.Marshal(&lb.ApproveChaincodeDefinitionForMyOrgArgs{
		Name: benchChaincode, Version: "1.0", Sequence: 1, ValidationParameter: vp,
		Source: &lb.ChaincodeSource{Type: &lb.ChaincodeSource_Unavailable_{Unavailable: &lb.ChaincodeSource_Unavailable{}}},
	})
	if err != nil {
		return err
	}
	define, err := proto.Marshal(&lb.CommitChaincodeDefinitionArgs{Name: benchChaincode, Version: "1.0", Sequence: 1, ValidationParameter: vp})
	if err != nil {
		return err
	}
	channelID, err := block.ChannelID(c.genesis)
	if err != nil {
		return err
	}
	lc := func(mspID, fn string, arg []byte, endorsers ...*crypto.SigningIdentity) ([]byte, error) {
		scc, err := lifecycle.New(lifecycle.Config{PackageDir: filepath.Join(c.dir, "packages"), MSPID: mspID})
		if err != nil {
			return nil, err
		}
		return benchTx(channelID, lifecycle.Namespace, ids.user1, endorsers, func(txID string) ([]byte, error) {
			sim, err := scratch.NewTxSimulator(txID)
			if err != nil {
				return nil, err
			}
			defer sim.Done()
			resp := scc.Invoke(ctx, lifecycle.Invocation{
				ChannelID: channelID, Args: [][]byte{[]byte(fn), arg}, State: sim,
				CreatorMSPID: mspID, CreatorIsAdmin: true, OrgMSPIDs: []string{"Org1MSP", "Org2MSP"},
			})
			if resp.Status != 200 {
				return nil, fmt.Errorf("%s for %s: status %d: %s", fn, mspID, resp.Status, resp.Message)
			}
			rws, err := sim.Results()
			if err != nil {
				return nil, err
			}
			return proto.Marshal(rws)
		})
	}
	commitScratch := func(data [][]byte) error {
		if err := appendBlock(data); err != nil {
			return err
		}
		last := &cb.Block{}
		if err := proto.Unmarshal(c.blocks[len(c.blocks)-1], last); err != nil {
			return err
		}
		codes := make([]pb.TxValidationCode, len(data))
		_, err := scratch.Commit(last, codes) // zero value is VALID
		return err
	}
	a1, err := lc("Org1MSP", lifecycle.ApproveChaincodeDefinitionForMyOrgFuncName, approve, ids.peer1)
	if err != nil {
		return err
	}
	a2, err := lc("Org2MSP", lifecycle.ApproveChaincodeDefinitionForMyOrgFuncName, approve, ids.peer2)
	if err != nil {
		return err
	}
	if err := commitScratch([][]byte{a1, a2}); err != nil {
		return err
	}
	d, err := lc("Org1MSP", lifecycle.CommitChaincodeDefinitionFuncName, define, ids.peer1, ids.peer2)
	if err != nil {
		return err
	}
	if err := commitScratch([][]byte{d}); err != nil {
		return err
	}
	c.setup = uint64(len(c.blocks))

	// The measured blocks: each transaction writes its own key. Envelopes are
	// signed in parallel; blocks are chained in order.
	workers := runtime.GOMAXPROCS(0)
	for first := 0; first < c.cfg.Txs; first += c.cfg.BlockSize {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(c.cfg.BlockSize, c.cfg.Txs-first)
		data := make([][]byte, n)
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					key := "key" + strconv.Itoa(first+i)
					data[i], errs[w] = benchTx(channelID, benchChaincode, ids.user1, []*crypto.SigningIdentity{ids.peer1, ids.peer2}, func(string) ([]byte, error) {
						return benchWrite(key)
					})
					if errs[w] != nil {
						return
					}
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("build transactions: %w", err)
		}
		if err := appendBlock(data); err != nil {
			return err
		}
		c.txs += n
	}
	return nil
}

// benchWrite is the read-write set of a transaction writing one key of basic.
func benchWrite(key string) ([]byte, error) {
	kv, err := proto.Marshal(&kvrwset.KVRWSet{Writes: []*kvrwset.KVWrite{{Key: key, Value: []byte(`{"ID":"` + key + `","Color":"blue","Size":5,"Owner":"Tomoko","AppraisedValue":300}`)}}})
	if err != nil {
		return nil, err
	}
	return proto.Marshal(&rwset.TxReadWriteSet{DataModel: rwset.TxReadWriteSet_KV, NsRwset: []*rwset.NsReadWriteSet{{Namespace: benchChaincode, Rwset: kv}}})
}

// benchTx is a signed endorser transaction of chaincode cc by creator,
// endorsed by endorsers over the results simulate returns for its tx ID.
func benchTx(channelID, cc string, creator *crypto.SigningIdentity, endorsers []*crypto.SigningIdentity, simulate func(txID string) ([]byte, error)) ([]byte, error) {
	prop, txID, err := envelope.NewProposal(channelID, cc, [][]byte{[]byte("invoke")}, nil, creator.Serialize())
	if err != nil {
		return nil, err
	}
	sp, err := envelope.SignProposal(prop, creator)
	if err != nil {
		return nil, err
	}
	p, err := envelope.UnpackProposal(sp)
	if err != nil {
		return nil, err
	}
	results, err := simulate(txID)
	if err != nil {
		return nil, err
	}
	responses := make([]*pb.ProposalResponse, 0, len(endorsers))
	for _, e := range endorsers {
		r, err := envelope.Endorse(p, e, &pb.Response{Status: 200}, results, nil, &pb.ChaincodeID{Name: cc})
		if err != nil {
			return nil, err
		}
		responses = append(responses, r)
	}
	env, err := envelope.NewTransaction(p, responses)
	if err != nil {
		return nil, err
	}
	if env.Signature, err = creator.Sign(env.Payload); err != nil {
		return nil, err
	}
	return proto.Marshal(env)
}

// signBenchBlock sets b's SIGNATURES metadata as the orderer does.
func signBenchBlock(b *cb.Block, s *crypto.SigningIdentity) error {
	nonce, err := envelope.NewNonce()
	if err != nil {
		return err
	}
	value, err := proto.Marshal(&cb.OrdererBlockMetadata{LastConfig: &cb.LastConfig{Index: 0}})
	if err != nil {
		return err
	}
	sh, err := proto.Marshal(&cb.SignatureHeader{Creator: s.Serialize(), Nonce: nonce})
	if err != nil {
		return err
	}
	sig, err := s.Sign(append(append(append([]byte{}, value...), sh...), block.HeaderBytes(b.Header)...))
	if err != nil {
		return err
	}
	md, err := proto.Marshal(&cb.Metadata{Value: value, Signatures: []*cb.MetadataSignature{{SignatureHeader: sh, Signature: sig}}})
	if err != nil {
		return err
	}
	b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = md
	return nil
}

// Replay times one fresh peer channel catching up with the chain: the clock
// starts once the setup blocks are committed and stops when the last block
// is. Every measured transaction must be VALID.
func (c *BenchChain) Replay(ctx context.Context) (BenchResult, error) {
	ch, done, err := c.newChannel()
	if err != nil {
		return BenchResult{}, err
	}
	defer done()
	runCtx, cancel := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- ch.Run(runCtx) }()
	stop := func() error { cancel(); return <-runErr }

	final := uint64(len(c.blocks)) + 1
	var start time.Time
	var cpu time.Duration
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		h := ch.Ledger().Height()
		if start.IsZero() && h > c.setup {
			start, cpu = time.Now(), proccpu.Self()
		}
		if h >= final {
			break
		}
		select {
		case <-tick.C:
		case err := <-runErr:
			cancel()
			if err == nil {
				err = ctx.Err()
			}
			return BenchResult{}, fmt.Errorf("channel stopped at height %d of %d: %w", h, final, err)
		}
	}
	elapsed, cpu := time.Since(start), proccpu.Self()-cpu
	if err := stop(); err != nil {
		return BenchResult{}, err
	}
	return c.result(ch, BenchModeCatchUp, elapsed, cpu)
}

// Commit times a fresh peer channel validating and committing the measured
// blocks handed to it directly (CommitBlocks): the setup blocks are committed
// and the measured ones decoded before the clock starts. Every measured
// transaction must be VALID.
func (c *BenchChain) Commit(ctx context.Context) (BenchResult, error) {
	ch, done, err := c.newChannel()
	if err != nil {
		return BenchResult{}, err
	}
	defer done()
	blocks := make([]*cb.Block, len(c.blocks))
	for i, raw := range c.blocks {
		if blocks[i], err = block.Unmarshal(raw); err != nil {
			return BenchResult{}, err
		}
	}
	if err := ch.CommitBlocks(ctx, blocks[:c.setup]); err != nil {
		return BenchResult{}, fmt.Errorf("setup blocks: %w", err)
	}
	start, cpu := time.Now(), proccpu.Self()
	if err := ch.CommitBlocks(ctx, blocks[c.setup:]); err != nil {
		return BenchResult{}, err
	}
	elapsed, cpu := time.Since(start), proccpu.Self()-cpu
	return c.result(ch, BenchModeCommit, elapsed, cpu)
}

// newChannel creates a fresh channel on its own ledger; done closes it and
// removes the ledger.
func (c *BenchChain) newChannel() (*channel.Channel, func(), error) {
	c.replays++
	dir := filepath.Join(c.dir, "replay-"+strconv.Itoa(c.replays))
	cert := c.peerTLS
	ch, err := channel.Create(channel.Config{
		Dir: dir, MSPID: "Org1MSP", Validator: validator.New(validator.Config{Logger: c.cfg.Logger}),
		Puller: puller.Config{Signer: c.peer, ClientCert: &cert, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
		Logger: c.cfg.Logger, NoSync: c.cfg.NoSync,
	}, c.genesis)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return ch, func() { ch.Close(); os.RemoveAll(dir) }, nil
}

// result checks that every measured transaction committed VALID and makes
// the run's result.
func (c *BenchChain) result(ch *channel.Channel, mode string, elapsed, cpu time.Duration) (BenchResult, error) {
	final := uint64(len(c.blocks)) + 1
	for n := c.setup + 1; n < final; n++ {
		b, err := ch.Ledger().Block(n)
		if err != nil {
			return BenchResult{}, err
		}
		for i, code := range block.TxFilter(b) {
			if pb.TxValidationCode(code) != pb.TxValidationCode_VALID {
				return BenchResult{}, fmt.Errorf("bench transaction %d of block %d committed as %s: the run measures nothing", i, n, pb.TxValidationCode(code))
			}
		}
	}
	return BenchResult{
		Mode:       mode,
		TPS:        float64(c.txs) / elapsed.Seconds(),
		Blocks:     len(c.blocks) - int(c.setup),
		Txs:        c.txs,
		Seconds:    elapsed.Seconds(),
		CPUSeconds: cpu.Seconds(),
	}, nil
}

// Close stops the orderer and removes the temporary folder, if it made one.
func (c *BenchChain) Close() {
	if c.server != nil {
		c.server.Stop()
		<-c.served
		c.server = nil
	}
	if c.removeDir {
		os.RemoveAll(c.dir)
		c.removeDir = false
	}
}

// benchOrderer delivers the prepared blocks from the requested number on and
// then holds the stream open, as an orderer with no newer block does.
type benchOrderer struct {
	ab.UnimplementedAtomicBroadcastServer
	blocks [][]byte // block n is blocks[n-1]
}

func (o benchOrderer) Deliver(stream ab.AtomicBroadcast_DeliverServer) error {
	env, err := stream.Recv()
	if err != nil {
		return err
	}
	payload := &cb.Payload{}
	seek := &ab.SeekInfo{}
	if err := proto.Unmarshal(env.GetPayload(), payload); err != nil {
		return err
	}
	if err := proto.Unmarshal(payload.GetData(), seek); err != nil {
		return err
	}
	start := seek.GetStart().GetSpecified().GetNumber()
	if start == 0 {
		start = 1 // the peer holds the genesis block from its join
	}
	for n := start; n <= uint64(len(o.blocks)); n++ {
		b := &cb.Block{}
		if err := proto.Unmarshal(o.blocks[n-1], b); err != nil {
			return err
		}
		if err := stream.Send(&ab.DeliverResponse{Type: &ab.DeliverResponse_Block{Block: b}}); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return nil
}
