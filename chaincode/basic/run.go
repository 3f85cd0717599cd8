package basic

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
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

// Config says how the chaincode process reaches its peer.
type Config struct {
	// ChaincodeID is the package ID the chaincode registers as
	// (CORE_CHAINCODE_ID_NAME).
	ChaincodeID string
	// PeerAddress is the peer's chaincode listener, host:port.
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

// ConfigFromEnv builds a Config the way Fabric's Go shim does, from the
// environment read through getenv (os.Getenv in production) and the command
// line args (for -peer.address). See the package documentation for the
// variables and their formats.
func ConfigFromEnv(getenv func(string) string, args []string) (Config, error) {
	cfg := Config{
		ChaincodeID: getenv("CORE_CHAINCODE_ID_NAME"),
		PeerAddress: getenv("CORE_PEER_ADDRESS"),
	}
	if addr := peerAddressFlag(args); addr != "" {
		cfg.PeerAddress = addr
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
		cfg.TLS, err = ClientTLSConfig(key, cert, root)
		if err != nil {
			return Config{}, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// ClientTLSConfig builds the chaincode's mutual-TLS client configuration from
// PEM key, certificate and root CA bytes.
func ClientTLSConfig(keyPEM, certPEM, rootPEM []byte) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse client TLS key pair: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return nil, errors.New("peer TLS root certificate file holds no PEM certificate")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		RootCAs:      roots,
	}, nil
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

// peerAddressFlag finds -peer.address / --peer.address in args without
// touching the process-wide flag set.
func peerAddressFlag(args []string) string {
	for i, arg := range args {
		name := strings.TrimLeft(arg, "-")
		if name == arg {
			continue
		}
		if v, ok := strings.CutPrefix(name, "peer.address="); ok {
			return v
		}
		if name == "peer.address" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// maxMessageSize matches the shim's 100 MiB limit in both directions.
const maxMessageSize = 100 * 1024 * 1024

// Serve connects the basic chaincode to the peer in cfg and runs the shim's
// protocol until the stream ends or ctx is cancelled. It returns only after
// the connection is closed.
func Serve(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cc, err := NewChaincode()
	if err != nil {
		return err
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	conn, err := grpc.NewClient(cfg.PeerAddress,
		grpc.WithTransportCredentials(creds),
		// The shim's keepalive values, so a peer tuned for Fabric chaincode
		// (keepalive enforcement MinTime ≤ 1m) accepts our pings.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                time.Minute,
			Timeout:             20 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize), grpc.MaxCallSendMsgSize(maxMessageSize)),
	)
	if err != nil {
		return fmt.Errorf("dial peer %s: %w", cfg.PeerAddress, err)
	}
	defer conn.Close()

	// Cancelling the stream's context is what unblocks the shim's Recv when
	// ctx ends; the shim then returns.
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := peer.NewChaincodeSupportClient(conn).Register(streamCtx)
	if err != nil {
		return fmt.Errorf("open chaincode stream to %s: %w", cfg.PeerAddress, err)
	}
	// StartInProc is the shim's entry point for a caller-provided stream; it
	// runs exactly the protocol shim.Start runs after dialing.
	if err := shim.StartInProc(cfg.ChaincodeID, stream, cc); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("chaincode %s stopped: %w", cfg.ChaincodeID, ctx.Err())
		}
		return fmt.Errorf("chaincode %s: %w", cfg.ChaincodeID, err)
	}
	return nil
}

// Run starts the basic chaincode as Fabric starts a Go chaincode process: as
// an external service when CHAINCODE_SERVER_ADDRESS is set, otherwise by
// dialing the peer named in the environment (see the package documentation).
// It blocks until the chaincode stops.
func Run() error {
	if os.Getenv("CHAINCODE_SERVER_ADDRESS") != "" && os.Getenv("CORE_CHAINCODE_ID_NAME") != "" {
		cc, err := NewChaincode()
		if err != nil {
			return err
		}
		if err := cc.Start(); err != nil {
			return fmt.Errorf("serve basic chaincode: %w", err)
		}
		return nil
	}
	cfg, err := ConfigFromEnv(os.Getenv, os.Args[1:])
	if err != nil {
		return fmt.Errorf("basic chaincode config: %w", err)
	}
	return Serve(context.Background(), cfg)
}
