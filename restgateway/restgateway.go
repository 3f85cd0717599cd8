// Package restgateway is Cairn's standalone REST gateway (`cairn gateway
// start`): JSON over HTTPS for applications without a Fabric SDK, in front of
// the Fabric Gateway gRPC service every Cairn peer hosts. It talks to the peer
// with the official fabric-gateway client, one client.Gateway per configured
// identity, all over one gRPC connection.
//
// API (the embedded openapi.json, served at /openapi.json, is the contract):
//
//	POST /v1/channels/{channel}/chaincodes/{chaincode}/transactions  submit; 200 once committed VALID, 202 with "async"
//	POST /v1/channels/{channel}/chaincodes/{chaincode}/queries       evaluate
//	GET  /v1/channels/{channel}/transactions/{txid}                   commit status (404 if not committed within ?wait=)
//	GET  /v1/channels/{channel}/blocks?start=N                        block events (Server-Sent Events)
//	GET  /v1/channels/{channel}/chaincodes/{chaincode}/events?start=N chaincode events (Server-Sent Events)
//	GET  /openapi.json, /healthz                                      no credentials needed
//
// Callers authenticate with a bearer token (the configuration holds only its
// SHA-256) or a client TLS certificate verified against tls.clientRootCAs
// and mapped by fingerprint or subject CN; either way they act as one
// configured identity, whose key comes from a KeyStore. Missing or unknown
// credentials get 401, a channel or chaincode outside the identity's access
// lists 403, both as the JSON error body {"error": {"code", "message",
// "details"}} that every failure uses (errors.go holds the one mapping from
// fabric-gateway errors to HTTP statuses).
//
// Event streams: every block event carries `id: <block number>`; every
// chaincode event `id: <block number>:<tx ID>`, because one block can hold
// several events and a bare block number would lose or repeat the rest of a
// block when a connection drops mid-block. A reconnecting client's
// Last-Event-ID resumes right after the event it names (and wins over
// ?start=, which EventSource repeats on reconnect); ?start=N starts at block
// N; neither means from the next block committed. Idle streams get a
// keepalive comment every sseKeepalive.
//
// Concurrency: New builds a Gateway and binds its listener; Run serves until
// its context ends, then drains requests (event streams end with the
// context) and closes the peer connection. Handlers run concurrently; every
// event stream owns one receiving goroutine that it stops and waits for.
package restgateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/ops"
)

// Deps are the process-wide facilities the binary passes in.
type Deps struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
	LogLevel *slog.LevelVar
	Version  string
	// KeyStores add key store types besides the built-in "file" (Vault, in
	// a later issue), keyed by IdentityConfig.KeyStore.Type.
	KeyStores map[string]KeyStore
}

// Gateway is a configured REST gateway.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	conn    *grpc.ClientConn
	ids     *identities
	auth    *authenticator
	handler http.Handler
	lis     net.Listener
	ops     *ops.Server
}

// New validates cfg, reads the TLS material and certificates, prepares the
// (lazy) connection to the peer and binds the listener; Run serves.
func New(cfg Config, deps Deps) (*Gateway, error) {
	stores := map[string]KeyStore{KeyStoreFile: FileKeyStore{}}
	var extra []string
	for typ, ks := range deps.KeyStores {
		stores[typ] = ks
		extra = append(extra, typ)
	}
	if err := cfg.Validate(extra...); err != nil {
		return nil, fmt.Errorf("rest gateway config: %w", err)
	}
	cfg = cfg.withDefaults()
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	serverTLS, err := comm.ServerTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientRootCAs, false)
	if err != nil {
		return nil, fmt.Errorf("rest gateway TLS: %w", err)
	}
	serverTLS.NextProtos = []string{"h2", "http/1.1"}
	peerTLS, err := comm.ClientTLS([]string{cfg.Peer.TLSRootCert}, cfg.Peer.ClientCertFile, cfg.Peer.ClientKeyFile, cfg.Peer.ServerName)
	if err != nil {
		return nil, fmt.Errorf("peer TLS: %w", err)
	}
	conn, err := comm.Dial(cfg.Peer.Address, peerTLS)
	if err != nil {
		return nil, err
	}
	ids, err := newIdentities(cfg, conn, stores)
	if err != nil {
		conn.Close()
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: log, conn: conn, ids: ids, auth: newAuthenticator(cfg)}
	g.handler = g.router()
	if cfg.OperationsListenAddress != "" {
		g.ops = ops.New(ops.Config{ListenAddress: cfg.OperationsListenAddress, Registry: deps.Registry,
			Logger: log, Level: deps.LogLevel, Version: deps.Version})
		g.ops.AddCheck("peer", func(context.Context) error { return g.peerHealth() })
	}
	lis, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("rest gateway listen on %s: %w", cfg.ListenAddress, err)
	}
	g.lis = tls.NewListener(lis, serverTLS)
	return g, nil
}

// Addr is the bound address of the API.
func (g *Gateway) Addr() string { return g.lis.Addr().String() }

// Run serves until ctx ends, then shuts the server down, waits for its
// handlers and closes the peer connection. Call it once.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.conn.Close()
	defer g.ids.close()
	if g.ops != nil {
		if err := g.ops.Start(); err != nil {
			g.lis.Close()
			return err
		}
		defer g.ops.Close()
	}
	// Start connecting now so that /healthz reflects the peer soon.
	g.conn.Connect()
	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: g.cfg.Timeouts.ReadHeader,
		IdleTimeout:       2 * time.Minute,
		// Request contexts derive from ctx, so event streams end with Run.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(g.lis) }()
	g.log.Info("REST gateway serving", "address", g.Addr(), "peer", g.cfg.Peer.Address)
	select {
	case err := <-served:
		return fmt.Errorf("rest gateway serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), g.cfg.Timeouts.Shutdown)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) && serveErr != nil {
		err = errors.Join(err, serveErr)
	}
	if err != nil {
		return fmt.Errorf("rest gateway shutdown: %w", err)
	}
	return nil
}

// peerHealth is nil unless the connection to the peer is failing.
func (g *Gateway) peerHealth() error {
	switch st := g.conn.GetState(); st {
	case connectivity.TransientFailure, connectivity.Shutdown:
		return fmt.Errorf("peer %s: connection %s", g.cfg.Peer.Address, st)
	case connectivity.Idle:
		g.conn.Connect()
	}
	return nil
}
