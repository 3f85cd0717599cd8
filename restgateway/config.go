package restgateway

import (
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Config is the REST gateway's configuration file (gateway.yaml).
type Config struct {
	// ListenAddress serves the REST API over HTTPS (port 0 picks a free port).
	ListenAddress string `yaml:"listenAddress"`
	// OperationsListenAddress, when set, serves /healthz, /metrics, /logspec
	// and /version over plain HTTP, as every Cairn node does.
	OperationsListenAddress string `yaml:"operationsListenAddress"`
	// TLS is the API's server certificate and the roots client certificates
	// are verified against.
	TLS TLSConfig `yaml:"tls"`
	// Peer is the Fabric Gateway gRPC endpoint (any Cairn or Fabric 2.4+ peer).
	Peer PeerConfig `yaml:"peer"`
	// Identities are the signing identities, by name, that callers map to.
	Identities map[string]IdentityConfig `yaml:"identities"`
	// Tokens map bearer tokens, stored as their SHA-256, to identities.
	Tokens []TokenConfig `yaml:"tokens"`
	// ClientCerts map verified client TLS certificates to identities.
	ClientCerts []ClientCertConfig `yaml:"clientCerts"`
	// Timeouts bound the calls to the peer and the HTTP server.
	Timeouts Timeouts `yaml:"timeouts"`
	// MaxRequestBytes caps a request body; larger bodies get 413 (default 1 MiB).
	MaxRequestBytes int64 `yaml:"maxRequestBytes"`
	// SSEKeepalive is the interval of keepalive comments on idle event
	// streams, so proxies do not close them (default 15s).
	SSEKeepalive time.Duration `yaml:"sseKeepalive"`
}

// TLSConfig names the API server's TLS files.
type TLSConfig struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ClientRootCAs verify client certificates when callers present one;
	// without them the API accepts bearer tokens only.
	ClientRootCAs []string `yaml:"clientRootCAs"`
}

// PeerConfig is how the gateway reaches the peer's gateway.Gateway service.
type PeerConfig struct {
	Address string `yaml:"address"`
	// TLSRootCert verifies the peer's TLS certificate.
	TLSRootCert string `yaml:"tlsRootCert"`
	// ServerName overrides the host name checked in the peer's certificate.
	ServerName string `yaml:"serverName"`
	// ClientCertFile and ClientKeyFile, when set, are presented to the peer
	// (for peers that require mutual TLS).
	ClientCertFile string `yaml:"clientCertFile"`
	ClientKeyFile  string `yaml:"clientKeyFile"`
}

// IdentityConfig is one signing identity: an MSP member whose key the
// gateway uses on behalf of the callers mapped to it.
type IdentityConfig struct {
	MSPID    string         `yaml:"mspId"`
	CertFile string         `yaml:"certFile"`
	KeyStore KeyStoreConfig `yaml:"keyStore"`
	// Access limits what callers mapped to this identity may reach; empty
	// lists allow everything. Denied calls get 403 without reaching the peer.
	Access AccessConfig `yaml:"access"`
}

// KeyStoreConfig says where an identity's private key lives.
type KeyStoreConfig struct {
	// Type selects the key store: "file" (default) or one the binary adds
	// through Deps.KeyStores.
	Type string `yaml:"type"`
	// KeyFile is the PEM private key (type file).
	KeyFile string `yaml:"keyFile"`
}

// AccessConfig lists the channels and chaincodes an identity may use.
type AccessConfig struct {
	Channels   []string `yaml:"channels"`
	Chaincodes []string `yaml:"chaincodes"`
}

// TokenConfig maps one bearer token to an identity. Only the token's SHA-256
// is configured, so a leaked configuration file does not leak the tokens.
type TokenConfig struct {
	// SHA256 is the lowercase hex SHA-256 of the token (`printf %s TOKEN | sha256sum`).
	SHA256   string `yaml:"sha256"`
	Identity string `yaml:"identity"`
}

// ClientCertConfig maps a client certificate, verified against
// tls.clientRootCAs, to an identity: by its SHA-256 fingerprint (hex of the
// DER bytes; colons allowed) or by its subject common name. Fingerprints are
// checked before common names.
type ClientCertConfig struct {
	Fingerprint string `yaml:"fingerprint"`
	SubjectCN   string `yaml:"subjectCN"`
	Identity    string `yaml:"identity"`
}

// Timeouts bound what the gateway waits for.
type Timeouts struct {
	// Evaluate, Endorse, Submit and CommitStatus bound the corresponding
	// Fabric Gateway calls (defaults 30s, 30s, 30s, 1m).
	Evaluate     time.Duration `yaml:"evaluate"`
	Endorse      time.Duration `yaml:"endorse"`
	Submit       time.Duration `yaml:"submit"`
	CommitStatus time.Duration `yaml:"commitStatus"`
	// TxStatusWait is how long GET .../transactions/{txid} waits for a
	// transaction the peer has not committed before answering 404
	// (default 2s; a caller may ask for up to CommitStatus with ?wait=).
	TxStatusWait time.Duration `yaml:"txStatusWait"`
	// ReadHeader bounds reading a request's headers (default 10s).
	ReadHeader time.Duration `yaml:"readHeader"`
	// Shutdown bounds draining requests when Run's context ends (default 10s).
	Shutdown time.Duration `yaml:"shutdown"`
}

// KeyStoreFile is the type of the built-in PEM file key store.
const KeyStoreFile = "file"

// withDefaults returns c with every unset optional field at its default.
func (c Config) withDefaults() Config {
	t := &c.Timeouts
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDur(&t.Evaluate, 30*time.Second)
	setDur(&t.Endorse, 30*time.Second)
	setDur(&t.Submit, 30*time.Second)
	setDur(&t.CommitStatus, time.Minute)
	setDur(&t.TxStatusWait, 2*time.Second)
	setDur(&t.ReadHeader, 10*time.Second)
	setDur(&t.Shutdown, 10*time.Second)
	setDur(&c.SSEKeepalive, 15*time.Second)
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = 1 << 20
	}
	ids := make(map[string]IdentityConfig, len(c.Identities))
	for name, id := range c.Identities {
		if id.KeyStore.Type == "" {
			id.KeyStore.Type = KeyStoreFile
		}
		ids[name] = id
	}
	c.Identities = ids
	return c
}

// Validate reports every unusable setting at once. keyStoreTypes are the
// key store types available besides "file".
func (c Config) Validate(keyStoreTypes ...string) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.ListenAddress == "" {
		add("listenAddress is required")
	}
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		add("tls.certFile and tls.keyFile are required: the REST gateway serves HTTPS only")
	}
	if c.Peer.Address == "" || c.Peer.TLSRootCert == "" {
		add("peer.address and peer.tlsRootCert are required")
	}
	if (c.Peer.ClientCertFile == "") != (c.Peer.ClientKeyFile == "") {
		add("peer.clientCertFile and peer.clientKeyFile go together")
	}
	if len(c.Identities) == 0 {
		add("at least one identity is required")
	}
	known := map[string]bool{KeyStoreFile: true}
	for _, t := range keyStoreTypes {
		known[t] = true
	}
	for _, name := range sortedKeys(c.Identities) {
		id := c.Identities[name]
		if id.MSPID == "" || id.CertFile == "" {
			add("identity %q: mspId and certFile are required", name)
		}
		typ := id.KeyStore.Type
		if typ == "" {
			typ = KeyStoreFile
		}
		switch {
		case !known[typ]:
			add("identity %q: unknown keyStore.type %q", name, typ)
		case typ == KeyStoreFile && id.KeyStore.KeyFile == "":
			add("identity %q: keyStore.keyFile is required for a file key store", name)
		}
	}
	if len(c.Tokens) == 0 && len(c.ClientCerts) == 0 {
		add("no tokens and no clientCerts: nobody could call the gateway")
	}
	for i, tk := range c.Tokens {
		if b, err := hex.DecodeString(tk.SHA256); err != nil || len(b) != 32 {
			add("tokens[%d]: sha256 must be 64 hex digits", i)
		}
		if _, ok := c.Identities[tk.Identity]; !ok {
			add("tokens[%d]: unknown identity %q", i, tk.Identity)
		}
	}
	if len(c.ClientCerts) > 0 && len(c.TLS.ClientRootCAs) == 0 {
		add("clientCerts need tls.clientRootCAs to verify client certificates against")
	}
	for i, cc := range c.ClientCerts {
		if (cc.Fingerprint == "") == (cc.SubjectCN == "") {
			add("clientCerts[%d]: set exactly one of fingerprint and subjectCN", i)
		}
		if cc.Fingerprint != "" {
			if b, err := hex.DecodeString(normalFingerprint(cc.Fingerprint)); err != nil || len(b) != 32 {
				add("clientCerts[%d]: fingerprint must be a SHA-256 (64 hex digits, colons allowed)", i)
			}
		}
		if _, ok := c.Identities[cc.Identity]; !ok {
			add("clientCerts[%d]: unknown identity %q", i, cc.Identity)
		}
	}
	if c.MaxRequestBytes < 0 {
		add("maxRequestBytes must not be negative")
	}
	return errors.Join(errs...)
}

// normalFingerprint lowercases a hex fingerprint and drops colons.
func normalFingerprint(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, ":", ""))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
