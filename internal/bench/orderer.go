// Package bench owns Cairn's load generators (`cairn bench …`): they drive a
// running network through its public protocols with real signed messages and
// measure throughput and latency. Each run owns its goroutines and stops them
// before returning.
package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/deliverclient"
	"github.com/cairn-ledger/cairn/internal/envelope"
)

// Defaults of OrdererConfig.
const (
	DefaultWindow = 32
	// DefaultRate is the envelopes/s the pre-signed pool is sized for when
	// neither Presign nor Rate is given.
	DefaultRate = 20000
)

// OrdererConfig configures an ordering benchmark.
type OrdererConfig struct {
	// Orderers are the Broadcast addresses; clients are spread over all of them.
	Orderers []string
	// TLSRootCert is the PEM file of the orderers' TLS CA.
	TLSRootCert string
	// Channel to broadcast on.
	Channel string
	// MSPID, CertFile and KeyFile name the client identity that signs envelopes
	// (it must satisfy /Channel/Writers).
	MSPID, CertFile, KeyFile string
	// Clients is the number of concurrent Broadcast streams.
	Clients int
	// Size is the envelope payload size in bytes.
	Size int
	// Duration of the measured run.
	Duration time.Duration
	// Window bounds the envelopes one stream has in flight (sent, not yet answered).
	Window int
	// Presign is how many envelopes are signed, on every core, before the
	// clock starts, so that client-side signing takes no CPU from the
	// orderers during the run. 0 sizes the pool for Rate envelopes/s over
	// Duration, plus 10 %. Should the pool run dry, streams sign live (counted
	// in OrdererResult.SignedLive).
	Presign int
	// Rate is the expected envelopes/s, used only to size the pool when
	// Presign is 0; 0 means DefaultRate.
	Rate int
	// Progress, if set, receives a line when pre-signing starts and ends.
	Progress io.Writer
	// PIDs are the orderer processes on this machine whose CPU time counts,
	// with the benchmark's own, towards OrdererResult.CPUPerEnvelopeUs.
	PIDs []int
}

// OrdererResult is what `cairn bench orderer --json` prints.
type OrdererResult struct {
	// TPS counts envelopes delivered in blocks during the measured window.
	TPS   float64 `json:"tps"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	// Sent, Delivered and Errors count the whole run, including the envelopes
	// in flight at the deadline delivered during the settle time.
	Sent      int64 `json:"sent"`
	Delivered int64 `json:"delivered"`
	Errors    int64 `json:"errors"`
	// Seconds is the measured window.
	Seconds float64 `json:"seconds"`
	// MinTPS1s and MaxTPS1s are the lowest and highest one-second delivery
	// rates after the first second of the window.
	MinTPS1s float64 `json:"min_tps_1s"`
	MaxTPS1s float64 `json:"max_tps_1s"`
	P90ms    float64 `json:"p90_ms"`
	MaxMs    float64 `json:"max_ms"`
	// Presigned is the size of the pre-signed pool, PresignSeconds the time it
	// took, and SignedLive the envelopes signed during the run because the
	// pool ran dry.
	Presigned      int     `json:"presigned"`
	PresignSeconds float64 `json:"presign_seconds"`
	SignedLive     int64   `json:"signed_live"`
	Orderers       int     `json:"orderers"`
	Clients        int     `json:"clients"`
	EnvelopeBytes  int     `json:"envelope_bytes"`
	// Blocks counts the delivered blocks that carried at least one of the
	// run's envelopes; Delivered/Blocks is the mean batch the cutter made.
	Blocks int64 `json:"blocks"`
	// CPUPerEnvelopeUs is the CPU time (user+system) that the benchmark
	// process and the orderer processes given in PIDs used during the
	// measured window, per envelope delivered in it: the cost that decides
	// how far a machine can go, less noisy than the rate when the machine is
	// shared. 0 when it could not be measured (not Linux, no PIDs).
	CPUPerEnvelopeUs float64 `json:"cpu_us_per_envelope"`
}

// run is the shared state of one benchmark run.
type run struct {
	cfg    OrdererConfig
	signer *crypto.SigningIdentity
	data   *pb.Transaction

	// pool holds the pre-signed envelopes, encoded; next hands them out.
	pool     []encoded
	bySig    map[sigKey]int32 // signature -> index into pool
	envBytes int              // payload + signature bytes of an envelope
	next     atomic.Int64
	// sentAt[i] is when pool[i] was sent, in ns since began; 0 if not sent.
	sentAt []atomic.Int64
	// live are envelopes signed during the run, by signature.
	liveMu     sync.Mutex
	live       map[string]int64
	signedLive atomic.Int64

	began    time.Time
	deadline time.Time

	sent, errs, delivered atomic.Int64
	// Owned by the watcher goroutine until it has returned.
	lats      []float64
	perSecond []int64
	inWindow  int64
	blocks    int64
}

// Orderer drives the orderers with pre-signed envelopes from many Broadcast
// streams while one Deliver stream watches the blocks; latency is measured
// from send to delivery of the envelope's block.
func Orderer(ctx context.Context, cfg OrdererConfig) (*OrdererResult, error) {
	if len(cfg.Orderers) == 0 {
		return nil, errors.New("no orderer addresses")
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 1
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Presign <= 0 {
		cfg.Presign = int(float64(cfg.Rate)*cfg.Duration.Seconds()*1.1) + cfg.Clients*cfg.Window
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	certPEM, err := os.ReadFile(cfg.CertFile)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	key, err := crypto.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	signer := &crypto.SigningIdentity{MSPID: cfg.MSPID, CertPEM: certPEM, Key: key}
	rootPEM, err := os.ReadFile(cfg.TLSRootCert)
	if err != nil {
		return nil, fmt.Errorf("orderer TLS root: %w", err)
	}
	certPool := x509.NewCertPool()
	if !certPool.AppendCertsFromPEM(rootPEM) {
		return nil, errors.New("orderer TLS root holds no certificate")
	}
	tlsCfg := &tls.Config{RootCAs: certPool, MinVersion: tls.VersionTLS12}

	payload := make([]byte, cfg.Size)
	if _, err := rand.Read(payload); err != nil {
		return nil, err
	}
	r := &run{
		cfg: cfg, signer: signer,
		data: &pb.Transaction{Actions: []*pb.TransactionAction{{Payload: payload}}},
		live: map[string]int64{},
	}
	fmt.Fprintf(cfg.Progress, "» pre-signing %d envelopes on %d cores\n", cfg.Presign, runtime.GOMAXPROCS(0))
	presignStart := time.Now()
	if err := r.presign(ctx, cfg.Presign); err != nil {
		return nil, err
	}
	presignTime := time.Since(presignStart)
	fmt.Fprintf(cfg.Progress, "» pre-signed in %.1fs\n", presignTime.Seconds())
	defer boundGarbage()()

	conns := make([]*grpc.ClientConn, len(cfg.Orderers))
	for i, addr := range cfg.Orderers {
		if conns[i], err = comm.Dial(addr, tlsCfg); err != nil {
			return nil, err
		}
		defer conns[i].Close()
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The watcher delivers from the current height on, so only this run's
	// envelopes are counted.
	start, err := height(runCtx, conns[0], cfg.Channel, signer)
	if err != nil {
		return nil, fmt.Errorf("read the chain height: %w", err)
	}
	cpuStart, cpuOK := cpuOf(cfg.PIDs)
	r.began = time.Now()
	r.deadline = r.began.Add(cfg.Duration)
	cpuEnd := make(chan time.Duration, 1)
	go func() {
		select {
		case <-time.After(cfg.Duration):
			if t, ok := cpuOf(cfg.PIDs); ok {
				cpuEnd <- t
			}
		case <-runCtx.Done():
		}
		close(cpuEnd)
	}()
	r.perSecond = make([]int64, int(math.Ceil(cfg.Duration.Seconds()))+1)

	watchErr := make(chan error, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		watchErr <- deliverFrom(watchCtx, conns[0], cfg.Channel, signer, start, r.onBlock)
	}()

	var wg sync.WaitGroup
	for c := 0; c < cfg.Clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			conn := conns[c%len(conns)]
			for time.Now().Before(r.deadline) && runCtx.Err() == nil {
				if err := r.broadcastLoop(runCtx, conn); err != nil {
					r.errs.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(c)
	}
	wg.Wait()
	elapsed := min(time.Since(r.began), cfg.Duration)
	// Give the last blocks a moment to arrive (a few batch timeouts).
	settle := time.Now().Add(5 * time.Second)
	for time.Now().Before(settle) && r.delivered.Load() < r.sent.Load()-r.errs.Load() {
		time.Sleep(20 * time.Millisecond)
	}
	stopWatch()
	<-watchErr

	res := &OrdererResult{
		Sent: r.sent.Load(), Delivered: r.delivered.Load(), Errors: r.errs.Load(), Seconds: elapsed.Seconds(),
		Presigned: len(r.pool), PresignSeconds: presignTime.Seconds(), SignedLive: r.signedLive.Load(),
		Orderers: len(cfg.Orderers), Clients: cfg.Clients, Blocks: r.blocks,
	}
	res.EnvelopeBytes = r.envBytes
	res.TPS = float64(r.inWindow) / elapsed.Seconds()
	if end, ok := <-cpuEnd; ok && cpuOK && len(cfg.PIDs) > 0 && r.inWindow > 0 {
		res.CPUPerEnvelopeUs = float64((end-cpuStart)/time.Microsecond) / float64(r.inWindow)
	}
	res.MinTPS1s, res.MaxTPS1s = secondRange(r.perSecond, int(elapsed/time.Second))
	sort.Float64s(r.lats)
	res.P50ms, res.P90ms, res.P99ms = percentile(r.lats, 0.50), percentile(r.lats, 0.90), percentile(r.lats, 0.99)
	if n := len(r.lats); n > 0 {
		res.MaxMs = r.lats[n-1]
	}
	return res, nil
}

// presign fills the pool with n signed envelopes, using every core.
func (r *run) presign(ctx context.Context, n int) error {
	r.pool = make([]encoded, n)
	r.sentAt = make([]atomic.Int64, n)
	err := onEveryCore(ctx, n, func(i int) error {
		env, err := r.sign()
		if err != nil {
			return err
		}
		raw, err := proto.Marshal(env)
		r.pool[i] = raw
		return err
	})
	if err != nil {
		return fmt.Errorf("pre-sign envelopes: %w", err)
	}
	r.bySig = make(map[sigKey]int32, n)
	for i, raw := range r.pool {
		sig := envelopeSignature(raw)
		if _, dup := r.bySig[keyOf(sig)]; dup {
			return fmt.Errorf("pre-sign envelopes: two signatures end alike (%x)", sig)
		}
		r.bySig[keyOf(sig)] = int32(i)
	}
	if n > 0 {
		r.envBytes = len(r.pool[0]) - wireOverhead(r.pool[0])
	}
	return nil
}

// wireOverhead is the bytes of raw (an encoded envelope) that are neither
// payload nor signature: field tags and lengths.
func wireOverhead(raw []byte) int {
	env := &cb.Envelope{}
	if proto.Unmarshal(raw, env) != nil {
		return 0
	}
	return len(raw) - len(env.Payload) - len(env.Signature)
}

func (r *run) sign() (*cb.Envelope, error) {
	return envelope.NewSignedEnvelope(cb.HeaderType_ENDORSER_TRANSACTION, r.cfg.Channel, r.signer, r.data)
}

// take returns the next envelope to send, encoded, and records its send
// time: from the pool while it lasts, else freshly signed.
func (r *run) take() (encoded, func(), error) {
	if i := int(r.next.Add(1) - 1); i < len(r.pool) {
		return r.pool[i], func() { r.sentAt[i].Store(int64(time.Since(r.began)) | 1) }, nil
	}
	env, err := r.sign()
	if err != nil {
		return nil, nil, err
	}
	raw, err := proto.Marshal(env)
	if err != nil {
		return nil, nil, err
	}
	r.signedLive.Add(1)
	return raw, func() {
		r.liveMu.Lock()
		r.live[string(env.Signature)] = int64(time.Since(r.began)) | 1
		r.liveMu.Unlock()
	}, nil
}

// onBlock matches a delivered block's envelopes to their send times. Only the
// watcher goroutine calls it.
func (r *run) onBlock(b *cb.Block) {
	now := time.Since(r.began)
	sec := int(now / time.Second)
	inWindow := now <= r.cfg.Duration
	ours := false
	defer func() {
		if ours {
			r.blocks++
		}
	}()
	for _, raw := range b.GetData().GetData() {
		sig := envelopeSignature(raw)
		var at int64
		if i, ok := r.bySig[keyOf(sig)]; ok && len(sig) > 0 {
			at = r.sentAt[i].Swap(0)
		} else if r.signedLive.Load() > 0 {
			r.liveMu.Lock()
			at = r.live[string(sig)]
			delete(r.live, string(sig))
			r.liveMu.Unlock()
		}
		if at == 0 {
			continue // not ours, or already counted
		}
		ours = true
		r.delivered.Add(1)
		r.lats = append(r.lats, float64(now-time.Duration(at))/float64(time.Millisecond))
		if inWindow {
			r.inWindow++
			if sec < len(r.perSecond) {
				r.perSecond[sec]++
			}
		}
	}
}

// envelopeSignature returns the Signature field of a marshalled Envelope
// without copying or decoding the payload; nil if raw is not one.
func envelopeSignature(raw []byte) []byte {
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 || num > protowire.MaxValidNumber {
			return nil
		}
		raw = raw[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, raw)
			if m < 0 {
				return nil
			}
			raw = raw[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(raw)
		if m < 0 {
			return nil
		}
		if num == 2 {
			return v
		}
		raw = raw[m:]
	}
	return nil
}

// broadcastLoop keeps one Broadcast stream busy with up to cfg.Window
// envelopes in flight until the deadline.
func (r *run) broadcastLoop(ctx context.Context, conn *grpc.ClientConn) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ab.NewAtomicBroadcastClient(conn).Broadcast(sctx, grpc.ForceCodecV2(newPassCodec()))
	if err != nil {
		return err
	}
	window := make(chan struct{}, r.cfg.Window)
	recvDone := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				recvDone <- err
				return
			}
			if resp.Status != cb.Status_SUCCESS {
				r.errs.Add(1)
			}
			<-window
		}
	}()
	var sendErr error
	for time.Now().Before(r.deadline) && ctx.Err() == nil {
		select {
		case window <- struct{}{}:
		case err := <-recvDone:
			return err
		}
		env, markSent, err := r.take()
		if err != nil {
			sendErr = err
			break
		}
		markSent()
		if err := stream.SendMsg(env); err != nil {
			sendErr = err
			break
		}
		r.sent.Add(1)
	}
	_ = stream.CloseSend()
	if err := <-recvDone; err != nil && sendErr == nil {
		sendErr = err
	}
	return sendErr
}

// height asks an orderer for its newest block and returns its number + 1.
func height(ctx context.Context, conn *grpc.ClientConn, channel string, signer *crypto.SigningIdentity) (uint64, error) {
	var h uint64
	err := deliver(ctx, conn, channel, signer, &ab.SeekInfo{
		Start:    &ab.SeekPosition{Type: &ab.SeekPosition_Newest{Newest: &ab.SeekNewest{}}},
		Stop:     &ab.SeekPosition{Type: &ab.SeekPosition_Newest{Newest: &ab.SeekNewest{}}},
		Behavior: ab.SeekInfo_FAIL_IF_NOT_READY,
	}, func(b *cb.Block) { h = b.Header.Number + 1 })
	return h, err
}

func deliverFrom(ctx context.Context, conn *grpc.ClientConn, channel string, signer *crypto.SigningIdentity, from uint64, fn func(*cb.Block)) error {
	err := deliver(ctx, conn, channel, signer, &ab.SeekInfo{
		Start:    &ab.SeekPosition{Type: &ab.SeekPosition_Specified{Specified: &ab.SeekSpecified{Number: from}}},
		Stop:     &ab.SeekPosition{Type: &ab.SeekPosition_Specified{Specified: &ab.SeekSpecified{Number: math.MaxUint64}}},
		Behavior: ab.SeekInfo_BLOCK_UNTIL_READY,
	}, fn)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func deliver(ctx context.Context, conn *grpc.ClientConn, channel string, signer *crypto.SigningIdentity, seek *ab.SeekInfo, fn func(*cb.Block)) error {
	return deliverclient.Seek(ctx, conn, channel, signer, seek, fn)
}

// secondRange is the lowest and highest count of perSecond[1:full], the
// complete seconds after the first.
func secondRange(perSecond []int64, full int) (lo, hi float64) {
	full = min(full, len(perSecond))
	if full <= 1 {
		return 0, 0
	}
	lo = math.Inf(1)
	for _, n := range perSecond[1:full] {
		lo, hi = math.Min(lo, float64(n)), math.Max(hi, float64(n))
	}
	return lo, hi
}

// percentile of sorted samples (milliseconds), q in [0,1]; 0 for no samples.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}
