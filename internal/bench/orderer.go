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
	"sort"
	"sync"
	"sync/atomic"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/envelope"
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
}

// OrdererResult is what `cairn bench orderer --json` prints.
type OrdererResult struct {
	TPS       float64 `json:"tps"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	Sent      int64   `json:"sent"`
	Delivered int64   `json:"delivered"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
}

// Orderer drives the orderers with signed envelopes from many Broadcast
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
		cfg.Window = 64
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
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		return nil, errors.New("orderer TLS root holds no certificate")
	}
	tlsCfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	conns := make([]*grpc.ClientConn, len(cfg.Orderers))
	for i, addr := range cfg.Orderers {
		if conns[i], err = comm.Dial(addr, tlsCfg); err != nil {
			return nil, err
		}
		defer conns[i].Close()
	}

	var (
		sentAt                sync.Map // tx ID -> time.Time
		sent, delivered, errs atomic.Int64
		latMu                 sync.Mutex
		lats                  []float64
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The watcher delivers from the current height on, so only this run's
	// envelopes are counted.
	start, err := height(runCtx, conns[0], cfg.Channel, signer)
	if err != nil {
		return nil, fmt.Errorf("read the chain height: %w", err)
	}
	watchErr := make(chan error, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		watchErr <- deliverFrom(watchCtx, conns[0], cfg.Channel, signer, start, func(b *cb.Block) {
			now := time.Now()
			for i := range b.Data.Data {
				ch, err := block.ChannelHeader(b, i)
				if err != nil {
					continue
				}
				if t, ok := sentAt.LoadAndDelete(ch.TxId); ok {
					delivered.Add(1)
					latMu.Lock()
					lats = append(lats, float64(now.Sub(t.(time.Time)).Microseconds())/1000)
					latMu.Unlock()
				}
			}
		})
	}()

	payload := make([]byte, cfg.Size)
	if _, err := rand.Read(payload); err != nil {
		return nil, err
	}
	began := time.Now()
	deadline := began.Add(cfg.Duration)
	var wg sync.WaitGroup
	for c := 0; c < cfg.Clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			conn := conns[c%len(conns)]
			for time.Now().Before(deadline) && runCtx.Err() == nil {
				if err := broadcastLoop(runCtx, conn, cfg, signer, payload, deadline, &sentAt, &sent, &errs); err != nil {
					errs.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(began)
	// Give the last blocks a moment to arrive (a few batch timeouts).
	settle := time.Now().Add(5 * time.Second)
	for time.Now().Before(settle) && delivered.Load() < sent.Load()-errs.Load() {
		time.Sleep(20 * time.Millisecond)
	}
	stopWatch()
	<-watchErr

	res := &OrdererResult{Sent: sent.Load(), Delivered: delivered.Load(), Errors: errs.Load(), Seconds: elapsed.Seconds()}
	res.TPS = float64(res.Delivered) / elapsed.Seconds()
	latMu.Lock()
	res.P50ms, res.P99ms = percentile(lats, 0.50), percentile(lats, 0.99)
	latMu.Unlock()
	return res, nil
}

// broadcastLoop keeps one Broadcast stream busy with up to cfg.Window
// envelopes in flight until the deadline.
func broadcastLoop(ctx context.Context, conn *grpc.ClientConn, cfg OrdererConfig, signer *crypto.SigningIdentity, payload []byte, deadline time.Time,
	sentAt *sync.Map, sent, errs *atomic.Int64) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ab.NewAtomicBroadcastClient(conn).Broadcast(sctx)
	if err != nil {
		return err
	}
	window := make(chan struct{}, cfg.Window)
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
				errs.Add(1)
			}
			<-window
		}
	}()
	var sendErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case window <- struct{}{}:
		case err := <-recvDone:
			return err
		}
		env, err := envelope.NewSignedEnvelope(cb.HeaderType_ENDORSER_TRANSACTION, cfg.Channel, signer, &pb.Transaction{Actions: []*pb.TransactionAction{{Payload: payload}}})
		if err != nil {
			sendErr = err
			break
		}
		parsed, err := envelope.Parse(env)
		if err != nil {
			sendErr = err
			break
		}
		sentAt.Store(parsed.ChannelHeader.TxId, time.Now())
		if err := stream.Send(env); err != nil {
			sentAt.Delete(parsed.ChannelHeader.TxId)
			sendErr = err
			break
		}
		sent.Add(1)
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
	env, err := envelope.NewSignedEnvelope(cb.HeaderType_DELIVER_SEEK_INFO, channel, signer, seek)
	if err != nil {
		return err
	}
	stream, err := ab.NewAtomicBroadcastClient(conn).Deliver(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(env); err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		switch t := resp.Type.(type) {
		case *ab.DeliverResponse_Block:
			fn(t.Block)
		case *ab.DeliverResponse_Status:
			if t.Status != cb.Status_SUCCESS {
				return fmt.Errorf("deliver answered %s", t.Status)
			}
			return nil
		}
	}
}

// percentile of samples (milliseconds), q in [0,1]; 0 for no samples.
func percentile(samples []float64, q float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}
