// Package comm owns Cairn's gRPC and TLS plumbing: TLS configurations built from
// PEM files, gRPC servers with Fabric-sized message limits and keepalive, and
// client connections. Every node and client command builds its connections here so
// that TLS is never optional and limits are the same everywhere.
package comm

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// MaxMessageSize is the largest gRPC message a Cairn node sends or accepts, as
// Fabric's default (100 MiB); channel-level limits (AbsoluteMaxBytes) are
// enforced by the services themselves with a clear status.
const MaxMessageSize = 100 << 20

// CertPool reads PEM certificates from files into a pool.
func CertPool(files ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read CA certificate: %w", err)
		}
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("no PEM certificate in %s", f)
		}
	}
	return pool, nil
}

// CertPoolFromPEM builds a pool from PEM bytes (as found in channel configs).
func CertPoolFromPEM(pems ...[]byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for i, p := range pems {
		if !pool.AppendCertsFromPEM(p) {
			return nil, fmt.Errorf("certificate %d is not PEM", i)
		}
	}
	return pool, nil
}

// ServerTLS builds a server TLS config from a key pair. With clientCAFiles the
// server verifies client certificates against them: always when
// requireClientCert, otherwise only when a client offers one.
func ServerTLS(certFile, keyFile string, clientCAFiles []string, requireClientCert bool) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.NoClientCert,
	}
	if len(clientCAFiles) > 0 {
		pool, err := CertPool(clientCAFiles...)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if requireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	} else if requireClientCert {
		return nil, errors.New("client certificates required but no client CA given")
	}
	return cfg, nil
}

// ClientTLS builds a client TLS config trusting rootCAFiles; with certFile and
// keyFile it presents that certificate (mutual TLS). serverName overrides the
// name checked in the server's certificate (empty: the dialled host).
func ClientTLS(rootCAFiles []string, certFile, keyFile, serverName string) (*tls.Config, error) {
	pool, err := CertPool(rootCAFiles...)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load TLS client key pair: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// streamWorkers is the least number of goroutines a server keeps for its RPCs:
// enough for the commit-status calls of a few hundred clients waiting at once.
// An idle worker is a parked goroutine with a small stack.
const streamWorkers = 256

// NewGRPCServer returns a gRPC server that speaks only TLS with Fabric's message
// limits and a keepalive policy that tolerates SDK clients pinging every minute.
func NewGRPCServer(tlsCfg *tls.Config, opts ...grpc.ServerOption) (*grpc.Server, error) {
	if tlsCfg == nil {
		return nil, errors.New("gRPC server needs a TLS configuration")
	}
	base := []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		// Long-lived workers serve the streams: a fresh goroutine per RPC
		// grows its stack again on every call (signature checks go deep),
		// which cost ~7 % of an endorsing peer's CPU. gRPC falls back to a
		// fresh goroutine whenever every worker is busy, and a worker stays
		// busy for the whole of a blocking call (a gateway's CommitStatus
		// waits for its block, Deliver and chaincode streams last for
		// hours), so the pool is sized for those, not for the cores.
		grpc.NumStreamWorkers(uint32(max(runtime.GOMAXPROCS(0), streamWorkers))),
	}
	return grpc.NewServer(append(base, opts...)...), nil
}

// Dial opens a client connection over TLS. The connection is lazy: errors
// surface on the first call.
func Dial(address string, tlsCfg *tls.Config, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if tlsCfg == nil {
		return nil, errors.New("dial needs a TLS configuration")
	}
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
	}
	conn, err := grpc.NewClient(address, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	return conn, nil
}
