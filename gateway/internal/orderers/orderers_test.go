package orderers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/protos/leadershippb"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// echoOrderer answers each envelope with its payload as Info, and ends a
// stream after closeAfter envelopes when that is set.
type echoOrderer struct {
	ab.UnimplementedAtomicBroadcastServer
	streams    atomic.Int64
	closeAfter int
	silent     bool // read envelopes, never answer
	// leadership, when set, is served as a Cairn orderer's Leadership
	// service; without it the orderer answers Unimplemented, as Fabric's.
	leadership *fakeLeadership
}

func (o *echoOrderer) Broadcast(srv grpc.BidiStreamingServer[common.Envelope, ab.BroadcastResponse]) error {
	o.streams.Add(1)
	for n := 1; ; n++ {
		env, err := srv.Recv()
		if err != nil {
			return nil
		}
		if o.silent {
			continue
		}
		if err := srv.Send(&ab.BroadcastResponse{Status: common.Status_SUCCESS, Info: string(env.Payload)}); err != nil {
			return err
		}
		if o.closeAfter > 0 && n == o.closeAfter {
			return errors.New("stream ended by the orderer")
		}
	}
}

// startOrderer serves o over TLS on 127.0.0.1 and returns its address and
// the PEM of its self-signed certificate.
func startOrderer(t testing.TB, o *echoOrderer) (string, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "orderer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12,
	})))
	ab.RegisterAtomicBroadcastServer(srv, o)
	if o.leadership != nil {
		leadershippb.RegisterLeadershipServer(srv, o.leadership)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func newTestPool(t *testing.T) *Pool {
	t.Helper()
	p := NewPool(Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	t.Cleanup(func() { p.Close() })
	return p
}

func env(s string) *common.Envelope { return &common.Envelope{Payload: []byte(s)} }

// TestSharedStreamMatchesResponses: concurrent callers share one stream and
// each gets the response to its own envelope.
func TestSharedStreamMatchesResponses(t *testing.T) {
	o := &echoOrderer{}
	addr, root := startOrderer(t, o)
	p := newTestPool(t)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for c := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				want := fmt.Sprintf("c%d-%d", c, i)
				resp, err := p.Broadcast(context.Background(), addr, [][]byte{root}, env(want))
				if err != nil {
					errs <- err
					return
				}
				if resp.Info != want {
					errs <- fmt.Errorf("got the response to %q, want %q", resp.Info, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := o.streams.Load(); n != 1 {
		t.Errorf("%d streams opened for 400 envelopes, want 1", n)
	}
}

// TestStreamEndedByOrderer: a stream the orderer ends fails the callers
// waiting on it; the next Broadcast opens a new stream.
func TestStreamEndedByOrderer(t *testing.T) {
	o := &echoOrderer{closeAfter: 3}
	addr, root := startOrderer(t, o)
	p := newTestPool(t)
	ok := 0
	for i := range 10 {
		resp, err := p.Broadcast(context.Background(), addr, [][]byte{root}, env(fmt.Sprint(i)))
		if err != nil {
			continue // the stream ended after the response; the next call reopens
		}
		if resp.Info != fmt.Sprint(i) {
			t.Fatalf("envelope %d: response %q", i, resp.Info)
		}
		ok++
	}
	if ok < 5 || o.streams.Load() < 3 {
		t.Errorf("%d envelopes answered over %d streams", ok, o.streams.Load())
	}
}

func TestBroadcastContextAndClose(t *testing.T) {
	o := &echoOrderer{}
	addr, root := startOrderer(t, o)
	p := NewPool(Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Broadcast(ctx, addr, [][]byte{root}, env("x")); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	if _, err := p.Broadcast(context.Background(), addr, [][]byte{root}, env("y")); err != nil {
		t.Fatalf("after an abandoned call: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Broadcast(context.Background(), addr, [][]byte{root}, env("z")); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestUnreachableOrderer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	p := newTestPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.Broadcast(ctx, addr, nil, env("x")); err == nil {
		t.Error("Broadcast to a closed port succeeded")
	}
}

// TestSilentOrdererStreamEnds: a caller whose deadline passes without an
// answer after the stall timeout ends the stream, so callers behind it fail
// too instead of waiting on it, and the next call opens a new stream; a
// caller whose deadline is shorter than the stall timeout does not.
func TestSilentOrdererStreamEnds(t *testing.T) {
	o := &echoOrderer{silent: true}
	addr, root := startOrderer(t, o)
	p := NewPool(Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}, StallTimeout: 150 * time.Millisecond})
	defer p.Close()

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Broadcast(short, addr, [][]byte{root}, env("short")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("short deadline: %v", err)
	}
	if n := o.streams.Load(); n != 1 {
		t.Fatalf("%d streams after a short deadline, want 1", n)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, d := range []time.Duration{200 * time.Millisecond, time.Minute} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			_, errs[i] = p.Broadcast(ctx, addr, [][]byte{root}, env(fmt.Sprint(i)))
		}()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	if !errors.Is(errs[0], context.DeadlineExceeded) || errs[1] == nil {
		t.Errorf("errors %v", errs)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("callers waited %s", el)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	p.Broadcast(ctx, addr, [][]byte{root}, env("again"))
	if n := o.streams.Load(); n != 2 {
		t.Errorf("%d streams, want 2", n)
	}
}

// BenchmarkBroadcast: one envelope answered per call, from parallel callers,
// over the pool's shared stream and, for comparison, over a stream per call
// (what the pool did before, as Fabric's gateway does), on one connection.
func BenchmarkBroadcast(b *testing.B) {
	addr, root := startOrderer(b, &echoOrderer{})
	b.Run("shared-stream", func(b *testing.B) {
		p := NewPool(Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
		defer p.Close()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := p.Broadcast(context.Background(), addr, [][]byte{root}, env("x")); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("stream-per-call", func(b *testing.B) {
		p := NewPool(Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
		defer p.Close()
		p.mu.Lock()
		conn, err := p.connLocked(poolKey(addr, [][]byte{root}), [][]byte{root})
		p.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ctx, cancel := context.WithCancel(context.Background())
				stream, err := ab.NewAtomicBroadcastClient(conn).Broadcast(ctx)
				if err == nil {
					err = stream.Send(env("x"))
				}
				if err == nil {
					_, err = stream.Recv()
				}
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
