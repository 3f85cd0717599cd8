package shimcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// This file deliberately does not share code with chaincode/basic: a
// chaincode package holds only its own source (see Source), so shimcheck
// must build on its own.

// Config says how the chaincode process reaches its peer (chaincode as client).
type Config struct {
	// ChaincodeID is the package ID the chaincode registers as
	// (CORE_CHAINCODE_ID_NAME).
	ChaincodeID string
	// PeerAddress is the peer's chaincode listener, host:port
	// (CORE_PEER_ADDRESS, or the -peer.address flag Fabric's builders pass).
	PeerAddress string
	// TLS is the client TLS configuration; nil dials without TLS.
	TLS *tls.Config
}

// Validate reports a missing required field.
func (c Config) Validate() error {
	if c.ChaincodeID == "" {
		return errors.New("chaincode ID (CORE_CHAINCODE_ID_NAME) must be set")
	}
	if c.PeerAddress == "" {
		return errors.New("peer address (CORE_PEER_ADDRESS or -peer.address) must be set")
	}
	return nil
}

// ConfigFromEnv reads the environment Fabric's Go shim reads, through getenv:
// CORE_CHAINCODE_ID_NAME, CORE_PEER_ADDRESS, CORE_PEER_TLS_ENABLED,
// CORE_PEER_TLS_ROOTCERT_FILE (PEM), and the client key and certificate as
// base64-of-PEM files CORE_TLS_CLIENT_KEY_PATH / CORE_TLS_CLIENT_CERT_PATH or
// plain PEM files CORE_TLS_CLIENT_KEY_FILE / CORE_TLS_CLIENT_CERT_FILE.
// peerAddress, when not empty, overrides CORE_PEER_ADDRESS.
func ConfigFromEnv(getenv func(string) string, peerAddress string) (Config, error) {
	cfg := Config{ChaincodeID: getenv("CORE_CHAINCODE_ID_NAME"), PeerAddress: getenv("CORE_PEER_ADDRESS")}
	if peerAddress != "" {
		cfg.PeerAddress = peerAddress
	}
	tlsEnabled, err := strconv.ParseBool(getenv("CORE_PEER_TLS_ENABLED"))
	if err != nil {
		return Config{}, errors.New("'CORE_PEER_TLS_ENABLED' must be set to 'true' or 'false'")
	}
	if tlsEnabled {
		key, err := readPEMOrBase64(getenv("CORE_TLS_CLIENT_KEY_FILE"), getenv("CORE_TLS_CLIENT_KEY_PATH"))
		if err != nil {
			return Config{}, fmt.Errorf("client TLS key: %w", err)
		}
		cert, err := readPEMOrBase64(getenv("CORE_TLS_CLIENT_CERT_FILE"), getenv("CORE_TLS_CLIENT_CERT_PATH"))
		if err != nil {
			return Config{}, fmt.Errorf("client TLS certificate: %w", err)
		}
		root, err := os.ReadFile(getenv("CORE_PEER_TLS_ROOTCERT_FILE"))
		if err != nil {
			return Config{}, fmt.Errorf("read peer TLS root certificate (CORE_PEER_TLS_ROOTCERT_FILE): %w", err)
		}
		if cfg.TLS, err = ClientTLSConfig(key, cert, root); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// ClientTLSConfig builds the mutual-TLS client configuration for dialling
// the peer from PEM key, certificate and root CA bytes.
func ClientTLSConfig(keyPEM, certPEM, rootPEM []byte) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse client TLS key pair: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return nil, errors.New("peer TLS root certificate holds no PEM certificate")
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, RootCAs: roots}, nil
}

// readPEMOrBase64 follows the shim: a *_FILE variable names a plain PEM file;
// otherwise the *_PATH variable names a file holding base64 of the PEM.
func readPEMOrBase64(plainPath, base64Path string) ([]byte, error) {
	if plainPath != "" {
		data, err := os.ReadFile(plainPath)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", plainPath, err)
		}
		return data, nil
	}
	data, err := os.ReadFile(base64Path)
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", base64Path, err)
	}
	decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("decode %s (expected base64 of PEM): %w", base64Path, err)
	}
	return decoded, nil
}

// maxMessageSize matches the shim's 100 MiB limit in both directions.
const maxMessageSize = 100 * 1024 * 1024

// Serve dials the peer in cfg, registers the chaincode and runs the shim's
// protocol until the stream ends or ctx is cancelled. It returns only after
// the connection is closed.
func Serve(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	conn, err := grpc.NewClient(cfg.PeerAddress,
		grpc.WithTransportCredentials(creds),
		// The shim's own keepalive values, which Fabric peers accept.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Minute, Timeout: 20 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize), grpc.MaxCallSendMsgSize(maxMessageSize)),
	)
	if err != nil {
		return fmt.Errorf("dial peer %s: %w", cfg.PeerAddress, err)
	}
	defer conn.Close()
	// Cancelling the stream's context is what unblocks the shim's Recv.
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := peer.NewChaincodeSupportClient(conn).Register(streamCtx)
	if err != nil {
		return fmt.Errorf("open chaincode stream to %s: %w", cfg.PeerAddress, err)
	}
	if err := shim.StartInProc(cfg.ChaincodeID, stream, Chaincode{}); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("chaincode %s stopped: %w", cfg.ChaincodeID, ctx.Err())
		}
		return fmt.Errorf("chaincode %s: %w", cfg.ChaincodeID, err)
	}
	return nil
}

// CCaaSConfig configures the chaincode as an external service the peer
// dials (Fabric's "chaincode as a service").
type CCaaSConfig struct {
	// Address is the listen address, host:port (CHAINCODE_SERVER_ADDRESS).
	Address string
	// ChaincodeID is the package ID the chaincode registers as: the ID of
	// the ccaas package installed on the peer (CHAINCODE_ID).
	ChaincodeID string
	// TLS is the server TLS configuration; set ClientAuth and ClientCAs to
	// require the peer's client certificate. Nil serves without TLS.
	TLS *tls.Config
	// Listener, when set, is used instead of listening on Address (tests
	// listen on 127.0.0.1:0 and read the port first). ServeCCaaS closes it.
	Listener net.Listener
}

// Validate reports a missing required field.
func (c CCaaSConfig) Validate() error {
	if c.ChaincodeID == "" {
		return errors.New("chaincode ID (CHAINCODE_ID) must be set")
	}
	if c.Address == "" && c.Listener == nil {
		return errors.New("chaincode server address (CHAINCODE_SERVER_ADDRESS) must be set")
	}
	return nil
}

// CCaaSConfigFromEnv reads the variables of Fabric's ccaas samples through
// getenv: CHAINCODE_SERVER_ADDRESS, CHAINCODE_ID (CORE_CHAINCODE_ID_NAME
// when unset), CHAINCODE_TLS_DISABLED (default true, as in the samples), and
// the PEM files CHAINCODE_TLS_KEY, CHAINCODE_TLS_CERT and, to require and
// check the peer's client certificate, CHAINCODE_CLIENT_CA_CERT. Missing
// address or ID are left for ServeCCaaS to report, so flags can supply them.
func CCaaSConfigFromEnv(getenv func(string) string) (CCaaSConfig, error) {
	cfg := CCaaSConfig{Address: getenv("CHAINCODE_SERVER_ADDRESS"), ChaincodeID: getenv("CHAINCODE_ID")}
	if cfg.ChaincodeID == "" {
		cfg.ChaincodeID = getenv("CORE_CHAINCODE_ID_NAME")
	}
	disabled := true
	if v := getenv("CHAINCODE_TLS_DISABLED"); v != "" {
		var err error
		if disabled, err = strconv.ParseBool(v); err != nil {
			return CCaaSConfig{}, fmt.Errorf("CHAINCODE_TLS_DISABLED=%q: must be true or false", v)
		}
	}
	if !disabled {
		read := func(name string) ([]byte, error) {
			path := getenv(name)
			if path == "" {
				return nil, fmt.Errorf("%s must name a PEM file when TLS is enabled", name)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", name, err)
			}
			return data, nil
		}
		key, err := read("CHAINCODE_TLS_KEY")
		if err != nil {
			return CCaaSConfig{}, err
		}
		cert, err := read("CHAINCODE_TLS_CERT")
		if err != nil {
			return CCaaSConfig{}, err
		}
		var clientCA []byte
		if getenv("CHAINCODE_CLIENT_CA_CERT") != "" {
			if clientCA, err = read("CHAINCODE_CLIENT_CA_CERT"); err != nil {
				return CCaaSConfig{}, err
			}
		}
		if cfg.TLS, err = ServerTLSConfig(key, cert, clientCA); err != nil {
			return CCaaSConfig{}, err
		}
	}
	return cfg, nil
}

// ServerTLSConfig builds the chaincode server's TLS configuration from PEM
// key and certificate; with clientCAPEM it requires and verifies the peer's
// client certificate, as the shim's ChaincodeServer does.
func ServerTLSConfig(keyPEM, certPEM, clientCAPEM []byte) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse server TLS key pair: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if len(clientCAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(clientCAPEM) {
			return nil, errors.New("client CA certificate holds no PEM certificate")
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ServeCCaaS serves the chaincode as an external service until ctx is
// cancelled: each peer that connects (Chaincode.Connect) gets the shim's
// protocol, starting with REGISTER as cfg.ChaincodeID. It returns nil after
// ctx ends and the server has stopped.
//
// It serves shim.ChaincodeServer's Connect on its own gRPC server rather
// than calling ChaincodeServer.Start, which cannot be stopped.
func ServeCCaaS(ctx context.Context, cfg CCaaSConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	lis := cfg.Listener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", cfg.Address); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Address, err)
		}
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMessageSize),
		grpc.MaxSendMsgSize(maxMessageSize),
		// As the shim's server: tolerate peer keepalive pings while idle.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	srv := grpc.NewServer(opts...)
	peer.RegisterChaincodeServer(srv, &shim.ChaincodeServer{CCID: cfg.ChaincodeID, CC: Chaincode{}})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		return fmt.Errorf("chaincode server on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
		// Stop, not GracefulStop: a connected peer's stream never ends on
		// its own.
		srv.Stop()
		<-served
		return nil
	}
}

// Run starts the chaincode as its command line and environment say: as an
// external service when CHAINCODE_SERVER_ADDRESS (or -ccaas.address) is set,
// otherwise by dialling the peer (CORE_PEER_ADDRESS or -peer.address). It
// blocks until ctx is cancelled or the connection ends.
func Run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("shimcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	peerAddress := fs.String("peer.address", "", "peer chaincode listener (chaincode as client); overrides CORE_PEER_ADDRESS")
	ccaasAddress := fs.String("ccaas.address", "", "listen address as an external service; overrides CHAINCODE_SERVER_ADDRESS")
	ccaasID := fs.String("ccaas.id", "", "package ID as an external service; overrides CHAINCODE_ID")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ccaasAddress != "" || getenv("CHAINCODE_SERVER_ADDRESS") != "" {
		cfg, err := CCaaSConfigFromEnv(getenv)
		if err != nil {
			return fmt.Errorf("shimcheck chaincode server config: %w", err)
		}
		if *ccaasAddress != "" {
			cfg.Address = *ccaasAddress
		}
		if *ccaasID != "" {
			cfg.ChaincodeID = *ccaasID
		}
		return ServeCCaaS(ctx, cfg)
	}
	cfg, err := ConfigFromEnv(getenv, *peerAddress)
	if err != nil {
		return fmt.Errorf("shimcheck chaincode config: %w", err)
	}
	return Serve(ctx, cfg)
}
