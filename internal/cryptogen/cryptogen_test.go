package cryptogen_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// testNetwork has two application organisations (org1 with two peers and a
// user, org2 with one peer) and one ordering organisation. peer1 listens on a
// host name of its own so its TLS certificate must name it.
func testNetwork() *netconfig.Network {
	return &netconfig.Network{
		OrdererOrgs: []netconfig.OrdererOrg{{
			Name: "Orderer", MSPID: "OrdererMSP", Domain: "example.com",
			Orderers: []netconfig.Node{{Name: "orderer0", Host: "127.0.0.1", Port: 7050}},
		}},
		PeerOrgs: []netconfig.PeerOrg{
			{
				Name: "Org1", MSPID: "Org1MSP", Domain: "org1.example.com",
				Peers: []netconfig.Node{
					{Name: "peer0", Host: "127.0.0.1", Port: 7051},
					{Name: "peer1", Host: "peer1.internal", Port: 8051},
				},
				Users: []string{"User1"},
			},
			{
				Name: "Org2", MSPID: "Org2MSP", Domain: "org2.example.com",
				Peers: []netconfig.Node{{Name: "peer0", Host: "127.0.0.1", Port: 9051}},
			},
		},
	}
}

func generate(t *testing.T) (cryptogen.Layout, time.Time) {
	t.Helper()
	dir := t.TempDir()
	start := time.Now()
	if err := cryptogen.Generate(testNetwork(), dir); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return cryptogen.Layout{Root: dir}, start
}

// idCase is one identity of testNetwork with the facts its certificates must
// show, located through Layout.
type idCase struct {
	name     string
	peerOrg  bool
	domain   string
	cn       string
	ou       string
	node     bool
	host     string
	short    string
	mspDir   string
	signCert string
	signKey  string
	tlsDir   string
	tlsCert  string
	tlsKey   string
	tlsCA    string
}

func identities(l cryptogen.Layout) []idCase {
	var ids []idCase
	node := func(peerOrg bool, domain, short, host, ou string) {
		full := short + "." + domain
		ids = append(ids, idCase{
			name: full, peerOrg: peerOrg, domain: domain, cn: full, ou: ou, node: true, host: host, short: short,
			mspDir:   l.NodeMSPDir(peerOrg, domain, full),
			signCert: l.NodeSignCertPath(peerOrg, domain, full),
			signKey:  l.NodeKeyPath(peerOrg, domain, full),
			tlsDir:   l.NodeTLSDir(peerOrg, domain, full),
			tlsCert:  l.NodeTLSCertPath(peerOrg, domain, full),
			tlsKey:   l.NodeTLSKeyPath(peerOrg, domain, full),
			tlsCA:    l.NodeTLSCACertPath(peerOrg, domain, full),
		})
	}
	user := func(peerOrg bool, domain, u, ou string) {
		ids = append(ids, idCase{
			name: u + "@" + domain, peerOrg: peerOrg, domain: domain, cn: u + "@" + domain, ou: ou,
			mspDir:   l.UserMSPDir(peerOrg, domain, u),
			signCert: l.UserSignCertPath(peerOrg, domain, u),
			signKey:  l.UserKeyPath(peerOrg, domain, u),
			tlsDir:   l.UserTLSDir(peerOrg, domain, u),
			tlsCert:  l.UserTLSCertPath(peerOrg, domain, u),
			tlsKey:   l.UserTLSKeyPath(peerOrg, domain, u),
			tlsCA:    l.UserTLSCACertPath(peerOrg, domain, u),
		})
	}
	node(false, "example.com", "orderer0", "127.0.0.1", "orderer")
	user(false, "example.com", "Admin", "admin")
	node(true, "org1.example.com", "peer0", "127.0.0.1", "peer")
	node(true, "org1.example.com", "peer1", "peer1.internal", "peer")
	user(true, "org1.example.com", "Admin", "admin")
	user(true, "org1.example.com", "User1", "client")
	node(true, "org2.example.com", "peer0", "127.0.0.1", "peer")
	user(true, "org2.example.com", "Admin", "admin")
	return ids
}

type orgCase struct {
	peerOrg bool
	domain  string
}

var testOrgs = []orgCase{{false, "example.com"}, {true, "org1.example.com"}, {true, "org2.example.com"}}

func readPEM(t *testing.T, path, wantType string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	b, rest := pem.Decode(raw)
	if b == nil || b.Type != wantType {
		t.Fatalf("%s: want one PEM block of type %q", path, wantType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: trailing data after PEM block", path)
	}
	return b.Bytes
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(readPEM(t, path, "CERTIFICATE"))
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return c
}

func readKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(readPEM(t, path, "PRIVATE KEY"))
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		t.Fatalf("%s: want a P-256 ECDSA key, got %T", path, k)
	}
	return ek
}

func poolOf(t *testing.T, paths ...string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, path := range paths {
		p.AddCert(readCert(t, path))
	}
	return p
}

func TestGenerateWritesCryptogenTree(t *testing.T) {
	l, _ := generate(t)

	// Spelled out literally rather than through Layout, so a wrong Layout
	// cannot hide a wrong tree.
	wantFiles := map[string]bool{}
	var wantEmptyDirs []string
	msp := func(dir, domain string, local bool, signName string) {
		wantFiles[dir+"/cacerts/ca."+domain+"-cert.pem"] = true
		wantFiles[dir+"/tlscacerts/tlsca."+domain+"-cert.pem"] = true
		wantFiles[dir+"/config.yaml"] = true
		wantEmptyDirs = append(wantEmptyDirs, dir+"/admincerts")
		if local {
			wantFiles[dir+"/signcerts/"+signName+"-cert.pem"] = true
			wantFiles[dir+"/keystore/priv_sk"] = true
		}
	}
	org := func(tree, domain, nodeDir string, nodes, users []string) {
		root := tree + "/" + domain
		for _, f := range []string{"ca/ca." + domain + "-cert.pem", "ca/priv_sk", "tlsca/tlsca." + domain + "-cert.pem", "tlsca/priv_sk"} {
			wantFiles[root+"/"+f] = true
		}
		msp(root+"/msp", domain, false, "")
		for _, n := range nodes {
			full := n + "." + domain
			msp(root+"/"+nodeDir+"/"+full+"/msp", domain, true, full)
			for _, f := range []string{"ca.crt", "server.crt", "server.key"} {
				wantFiles[root+"/"+nodeDir+"/"+full+"/tls/"+f] = true
			}
		}
		for _, u := range users {
			full := u + "@" + domain
			msp(root+"/users/"+full+"/msp", domain, true, full)
			for _, f := range []string{"ca.crt", "client.crt", "client.key"} {
				wantFiles[root+"/users/"+full+"/tls/"+f] = true
			}
		}
	}
	org("ordererOrganizations", "example.com", "orderers", []string{"orderer0"}, []string{"Admin"})
	org("peerOrganizations", "org1.example.com", "peers", []string{"peer0", "peer1"}, []string{"Admin", "User1"})
	org("peerOrganizations", "org2.example.com", "peers", []string{"peer0"}, []string{"Admin"})

	gotFiles := map[string]bool{}
	var gotEmptyDirs []string
	err := filepath.WalkDir(l.Root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(l.Root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !d.IsDir() {
			gotFiles[rel] = true
			return nil
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			gotEmptyDirs = append(gotEmptyDirs, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	for f := range wantFiles {
		if !gotFiles[f] {
			t.Errorf("missing file %s", f)
		}
	}
	for f := range gotFiles {
		if !wantFiles[f] {
			t.Errorf("unexpected file %s", f)
		}
	}
	sort.Strings(wantEmptyDirs)
	sort.Strings(gotEmptyDirs)
	if !slices.Equal(gotEmptyDirs, wantEmptyDirs) {
		t.Errorf("empty folders:\n got %v\nwant %v", gotEmptyDirs, wantEmptyDirs)
	}
}

func TestLayoutPaths(t *testing.T) {
	l := cryptogen.Layout{Root: "/out"}
	const (
		d  = "org1.example.com"
		od = "example.com"
		p  = "/out/peerOrganizations/org1.example.com"
		o  = "/out/ordererOrganizations/example.com"
	)
	tests := []struct {
		name, got, want string
	}{
		{"OrgsDir peer", l.OrgsDir(true), "/out/peerOrganizations"},
		{"OrgsDir orderer", l.OrgsDir(false), "/out/ordererOrganizations"},
		{"OrgDir", l.OrgDir(true, d), p},
		{"CADir", l.CADir(true, d), p + "/ca"},
		{"CACertPath", l.CACertPath(true, d), p + "/ca/ca.org1.example.com-cert.pem"},
		{"CAKeyPath", l.CAKeyPath(true, d), p + "/ca/priv_sk"},
		{"TLSCADir", l.TLSCADir(false, od), o + "/tlsca"},
		{"TLSCACertPath", l.TLSCACertPath(false, od), o + "/tlsca/tlsca.example.com-cert.pem"},
		{"TLSCAKeyPath", l.TLSCAKeyPath(false, od), o + "/tlsca/priv_sk"},
		{"OrgMSPDir", l.OrgMSPDir(true, d), p + "/msp"},
		{"NodeDir peer", l.NodeDir(true, d, "peer0."+d), p + "/peers/peer0.org1.example.com"},
		{"NodeDir orderer", l.NodeDir(false, od, "orderer0."+od), o + "/orderers/orderer0.example.com"},
		{"NodeMSPDir", l.NodeMSPDir(true, d, "peer0."+d), p + "/peers/peer0.org1.example.com/msp"},
		{"NodeSignCertPath", l.NodeSignCertPath(true, d, "peer0."+d), p + "/peers/peer0.org1.example.com/msp/signcerts/peer0.org1.example.com-cert.pem"},
		{"NodeKeyPath", l.NodeKeyPath(true, d, "peer0."+d), p + "/peers/peer0.org1.example.com/msp/keystore/priv_sk"},
		{"NodeTLSDir", l.NodeTLSDir(false, od, "orderer0."+od), o + "/orderers/orderer0.example.com/tls"},
		{"NodeTLSCertPath", l.NodeTLSCertPath(false, od, "orderer0."+od), o + "/orderers/orderer0.example.com/tls/server.crt"},
		{"NodeTLSKeyPath", l.NodeTLSKeyPath(false, od, "orderer0."+od), o + "/orderers/orderer0.example.com/tls/server.key"},
		{"NodeTLSCACertPath", l.NodeTLSCACertPath(false, od, "orderer0."+od), o + "/orderers/orderer0.example.com/tls/ca.crt"},
		{"UserDir admin", l.UserDir(true, d, "Admin"), p + "/users/Admin@org1.example.com"},
		{"UserMSPDir", l.UserMSPDir(true, d, "User1"), p + "/users/User1@org1.example.com/msp"},
		{"UserSignCertPath", l.UserSignCertPath(true, d, "User1"), p + "/users/User1@org1.example.com/msp/signcerts/User1@org1.example.com-cert.pem"},
		{"UserKeyPath", l.UserKeyPath(true, d, "User1"), p + "/users/User1@org1.example.com/msp/keystore/priv_sk"},
		{"UserTLSDir", l.UserTLSDir(false, od, "Admin"), o + "/users/Admin@example.com/tls"},
		{"UserTLSCertPath", l.UserTLSCertPath(false, od, "Admin"), o + "/users/Admin@example.com/tls/client.crt"},
		{"UserTLSKeyPath", l.UserTLSKeyPath(false, od, "Admin"), o + "/users/Admin@example.com/tls/client.key"},
		{"UserTLSCACertPath", l.UserTLSCACertPath(false, od, "Admin"), o + "/users/Admin@example.com/tls/ca.crt"},
		{"UserName", cryptogen.UserName(cryptogen.AdminUser, d), "Admin@org1.example.com"},
	}
	for _, tt := range tests {
		if filepath.ToSlash(tt.got) != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestCAs(t *testing.T) {
	l, start := generate(t)
	for _, o := range testOrgs {
		for _, ca := range []struct {
			kind, cn, certPath, keyPath string
		}{
			{"signing", "ca." + o.domain, l.CACertPath(o.peerOrg, o.domain), l.CAKeyPath(o.peerOrg, o.domain)},
			{"TLS", "tlsca." + o.domain, l.TLSCACertPath(o.peerOrg, o.domain), l.TLSCAKeyPath(o.peerOrg, o.domain)},
		} {
			t.Run(ca.kind+" "+o.domain, func(t *testing.T) {
				c := readCert(t, ca.certPath)
				key := readKey(t, ca.keyPath)
				if !key.PublicKey.Equal(c.PublicKey) {
					t.Error("priv_sk does not match the CA certificate")
				}
				if c.Subject.CommonName != ca.cn || !slices.Equal(c.Subject.Organization, []string{o.domain}) {
					t.Errorf("subject = %v, want CN=%s O=%s", c.Subject, ca.cn, o.domain)
				}
				if !c.IsCA || !c.BasicConstraintsValid {
					t.Error("not a CA certificate")
				}
				if err := c.CheckSignatureFrom(c); err != nil {
					t.Errorf("not self-signed: %v", err)
				}
				wantKU := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
				if c.KeyUsage != wantKU {
					t.Errorf("KeyUsage = %v, want %v", c.KeyUsage, wantKU)
				}
				if len(c.SubjectKeyId) == 0 {
					t.Error("no SubjectKeyId")
				}
				checkCommon(t, c, start)
			})
		}
	}
}

// checkCommon checks what every certificate shares: validity window, serial
// size, low-S signature.
func checkCommon(t *testing.T, c *x509.Certificate, start time.Time) {
	t.Helper()
	if lag := start.Sub(c.NotBefore); lag < 4*time.Minute || lag > 6*time.Minute {
		t.Errorf("NotBefore %v is %v before generation, want about 5 minutes", c.NotBefore, lag)
	}
	if c.NotAfter.Before(c.NotBefore.AddDate(10, 0, 0).Add(-time.Hour)) || c.NotAfter.After(c.NotBefore.AddDate(10, 0, 1)) {
		t.Errorf("validity %v..%v, want 10 years", c.NotBefore, c.NotAfter)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v: want positive and at most 128 bits", c.SerialNumber)
	}
	if c.SerialNumber.BitLen() < 64 {
		t.Errorf("serial %v looks too small to be random", c.SerialNumber)
	}
	if c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("signature algorithm %v, want ECDSA-SHA256", c.SignatureAlgorithm)
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(c.Signature, &sig); err != nil {
		t.Fatalf("decode signature: %v", err)
	}
	halfN := new(big.Int).Rsh(elliptic.P256().Params().N, 1)
	if sig.S.Cmp(halfN) > 0 {
		t.Error("certificate signature is high-S; Fabric would rewrite it")
	}
}

func TestSigningCertificates(t *testing.T) {
	l, start := generate(t)
	for _, id := range identities(l) {
		t.Run(id.name, func(t *testing.T) {
			ca := readCert(t, l.CACertPath(id.peerOrg, id.domain))
			c := readCert(t, id.signCert)
			if !readKey(t, id.signKey).PublicKey.Equal(c.PublicKey) {
				t.Error("keystore/priv_sk does not match signcerts")
			}
			if c.Subject.CommonName != id.cn {
				t.Errorf("CN = %q, want %q", c.Subject.CommonName, id.cn)
			}
			if !slices.Equal(c.Subject.OrganizationalUnit, []string{id.ou}) {
				t.Errorf("OU = %v, want [%s]", c.Subject.OrganizationalUnit, id.ou)
			}
			if c.IsCA {
				t.Error("leaf is a CA")
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %v, want DigitalSignature", c.KeyUsage)
			}
			if !bytes.Equal(c.AuthorityKeyId, ca.SubjectKeyId) {
				t.Error("AuthorityKeyId does not name the signing CA")
			}
			opts := x509.VerifyOptions{Roots: poolOf(t, id.mspDir+"/cacerts/ca."+id.domain+"-cert.pem"), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
			if _, err := c.Verify(opts); err != nil {
				t.Errorf("does not chain to msp/cacerts: %v", err)
			}
			opts.Roots = poolOf(t, l.TLSCACertPath(id.peerOrg, id.domain))
			if _, err := c.Verify(opts); err == nil {
				t.Error("signing certificate chains to the TLS CA")
			}
			checkCommon(t, c, start)
		})
	}
}

func TestTLSCertificates(t *testing.T) {
	l, start := generate(t)
	for _, id := range identities(l) {
		t.Run(id.name, func(t *testing.T) {
			caPath := l.TLSCACertPath(id.peerOrg, id.domain)
			if a, b := readPEM(t, caPath, "CERTIFICATE"), readPEM(t, id.tlsCA, "CERTIFICATE"); !bytes.Equal(a, b) {
				t.Error("tls/ca.crt differs from the TLS CA certificate")
			}
			c := readCert(t, id.tlsCert)
			if !readKey(t, id.tlsKey).PublicKey.Equal(c.PublicKey) {
				t.Error("TLS key does not match TLS certificate")
			}
			if c.Subject.CommonName != id.cn {
				t.Errorf("CN = %q, want %q", c.Subject.CommonName, id.cn)
			}
			if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
				t.Errorf("ExtKeyUsage = %v, want ServerAuth and ClientAuth", c.ExtKeyUsage)
			}
			for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				opts := x509.VerifyOptions{Roots: poolOf(t, caPath), KeyUsages: []x509.ExtKeyUsage{eku}}
				if _, err := c.Verify(opts); err != nil {
					t.Errorf("does not chain to the TLS CA for usage %v: %v", eku, err)
				}
			}
			opts := x509.VerifyOptions{Roots: poolOf(t, l.CACertPath(id.peerOrg, id.domain))}
			if _, err := c.Verify(opts); err == nil {
				t.Error("TLS certificate chains to the signing CA")
			}
			checkCommon(t, c, start)
			if !id.node {
				return
			}
			for _, name := range []string{id.cn, id.short, "localhost", id.host} {
				if !slices.Contains(c.DNSNames, name) && net.ParseIP(name) == nil {
					t.Errorf("SANs %v lack %q", c.DNSNames, name)
				}
			}
			if !slices.ContainsFunc(c.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
				t.Errorf("IP SANs %v lack 127.0.0.1", c.IPAddresses)
			}
			for _, name := range []string{id.cn, "localhost", "127.0.0.1", id.host} {
				if err := c.VerifyHostname(name); err != nil {
					t.Errorf("VerifyHostname(%q): %v", name, err)
				}
			}
		})
	}
}

func TestMutualTLS(t *testing.T) {
	l, _ := generate(t)
	const (
		o1 = "org1.example.com"
		o2 = "org2.example.com"
		oo = "example.com"
	)
	type pair struct{ cert, key string }
	node := func(peerOrg bool, domain, full string) pair {
		return pair{l.NodeTLSCertPath(peerOrg, domain, full), l.NodeTLSKeyPath(peerOrg, domain, full)}
	}
	user := func(peerOrg bool, domain, u string) pair {
		return pair{l.UserTLSCertPath(peerOrg, domain, u), l.UserTLSKeyPath(peerOrg, domain, u)}
	}
	tests := []struct {
		name       string
		server     pair
		client     pair
		trust      string // the only CA both sides trust
		serverName string
		wantErr    bool
	}{
		{"org1 user to org1 peer", node(true, o1, "peer0."+o1), user(true, o1, "User1"), l.TLSCACertPath(true, o1), "peer0." + o1, false},
		{"org1 admin to org1 peer by IP", node(true, o1, "peer0."+o1), user(true, o1, "Admin"), l.TLSCACertPath(true, o1), "127.0.0.1", false},
		{"org1 peer server cert as client", node(true, o1, "peer0."+o1), node(true, o1, "peer1."+o1), l.TLSCACertPath(true, o1), "peer0." + o1, false},
		{"orderer to orderer (Raft)", node(false, oo, "orderer0."+oo), node(false, oo, "orderer0."+oo), l.TLSCACertPath(false, oo), "localhost", false},
		{"org2 client rejected by org1 peer", node(true, o1, "peer0."+o1), user(true, o2, "Admin"), l.TLSCACertPath(true, o1), "peer0." + o1, true},
		{"orderer client rejected by org1 peer", node(true, o1, "peer0."+o1), node(false, oo, "orderer0."+oo), l.TLSCACertPath(true, o1), "peer0." + o1, true},
		{"org2 server rejected by org1 client", node(true, o2, "peer0."+o2), user(true, o1, "User1"), l.TLSCACertPath(true, o1), "peer0." + o2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverCert, err := tls.LoadX509KeyPair(tt.server.cert, tt.server.key)
			if err != nil {
				t.Fatalf("load server pair: %v", err)
			}
			clientCert, err := tls.LoadX509KeyPair(tt.client.cert, tt.client.key)
			if err != nil {
				t.Fatalf("load client pair: %v", err)
			}
			trust := poolOf(t, tt.trust)
			srvErr, cliErr := handshake(t,
				&tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: trust, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
				&tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: trust, ServerName: tt.serverName, MinVersion: tls.VersionTLS12},
			)
			failed := srvErr != nil || cliErr != nil
			if failed != tt.wantErr {
				t.Errorf("server err = %v, client err = %v; want failure = %v", srvErr, cliErr, tt.wantErr)
			}
		})
	}
}

// handshake runs one TLS handshake over loopback TCP and reports each side's
// error. The server goroutine is waited for before returning.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()

	done := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		conn := tls.Server(raw, serverCfg)
		defer conn.Close()
		err = conn.HandshakeContext(ctx)
		if err == nil {
			// Prove the channel works end to end, and in TLS 1.3 let the
			// client learn of a rejection before it reads.
			_, err = conn.Write([]byte{1})
		}
		done <- err
	}()

	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn := tls.Client(raw, clientCfg)
	clientErr = conn.HandshakeContext(ctx)
	if clientErr == nil {
		// With TLS 1.3 the server checks the client certificate after the
		// client's handshake is done; a read surfaces the server's verdict.
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatalf("set deadline: %v", err)
		}
		buf := make([]byte, 1)
		_, clientErr = conn.Read(buf)
	}
	conn.Close()
	return <-done, clientErr
}

// fabricMSPConfig mirrors the YAML of Fabric's msp.Configuration (NodeOUs part).
type fabricMSPConfig struct {
	NodeOUs *struct {
		Enable              bool                `yaml:"Enable"`
		ClientOUIdentifier  *fabricOUIdentifier `yaml:"ClientOUIdentifier"`
		PeerOUIdentifier    *fabricOUIdentifier `yaml:"PeerOUIdentifier"`
		AdminOUIdentifier   *fabricOUIdentifier `yaml:"AdminOUIdentifier"`
		OrdererOUIdentifier *fabricOUIdentifier `yaml:"OrdererOUIdentifier"`
	} `yaml:"NodeOUs"`
}

type fabricOUIdentifier struct {
	Certificate                  string `yaml:"Certificate"`
	OrganizationalUnitIdentifier string `yaml:"OrganizationalUnitIdentifier"`
}

func TestNodeOUsConfig(t *testing.T) {
	l, _ := generate(t)
	type mspCase struct {
		name, dir, domain string
		peerOrg           bool
	}
	var cases []mspCase
	for _, o := range testOrgs {
		cases = append(cases, mspCase{"org MSP " + o.domain, l.OrgMSPDir(o.peerOrg, o.domain), o.domain, o.peerOrg})
	}
	for _, id := range identities(l) {
		cases = append(cases, mspCase{"local MSP " + id.name, id.mspDir, id.domain, id.peerOrg})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(tc.dir, "config.yaml"))
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			dec := yaml.NewDecoder(bytes.NewReader(raw))
			dec.KnownFields(true)
			var cfg fabricMSPConfig
			if err := dec.Decode(&cfg); err != nil {
				t.Fatalf("decode config.yaml: %v\n%s", err, raw)
			}
			if cfg.NodeOUs == nil || !cfg.NodeOUs.Enable {
				t.Fatalf("NodeOUs not enabled:\n%s", raw)
			}
			caCert := readPEM(t, l.CACertPath(tc.peerOrg, tc.domain), "CERTIFICATE")
			for _, want := range []struct {
				id *fabricOUIdentifier
				ou string
			}{
				{cfg.NodeOUs.ClientOUIdentifier, "client"},
				{cfg.NodeOUs.PeerOUIdentifier, "peer"},
				{cfg.NodeOUs.AdminOUIdentifier, "admin"},
				{cfg.NodeOUs.OrdererOUIdentifier, "orderer"},
			} {
				if want.id == nil {
					t.Errorf("no identifier for OU %q", want.ou)
					continue
				}
				if want.id.OrganizationalUnitIdentifier != want.ou {
					t.Errorf("OU %q, want %q", want.id.OrganizationalUnitIdentifier, want.ou)
				}
				if want.id.Certificate != "cacerts/ca."+tc.domain+"-cert.pem" {
					t.Errorf("Certificate %q, want cacerts/ca.%s-cert.pem", want.id.Certificate, tc.domain)
				}
				got := readPEM(t, filepath.Join(tc.dir, filepath.FromSlash(want.id.Certificate)), "CERTIFICATE")
				if !bytes.Equal(got, caCert) {
					t.Errorf("%s is not the organisation's signing CA", want.id.Certificate)
				}
			}
		})
	}
}

func TestFileModes(t *testing.T) {
	l, _ := generate(t)
	err := filepath.WalkDir(l.Root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := info.Mode().Perm()
		switch {
		case d.IsDir():
			// MkdirAll honours the umask, which may only take bits away.
			if perm&^0o755 != 0 || perm&0o700 != 0o700 {
				t.Errorf("%s: folder mode %v, want 0755", path, perm)
			}
		case d.Name() == "priv_sk" || strings.HasSuffix(d.Name(), ".key"):
			if perm != 0o600 {
				t.Errorf("%s: key mode %v, want 0600", path, perm)
			}
		default:
			if perm != 0o644 {
				t.Errorf("%s: file mode %v, want 0644", path, perm)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
}

func TestGenerateRefusesExistingOrganisation(t *testing.T) {
	t.Run("second run", func(t *testing.T) {
		l, _ := generate(t)
		keyPath := l.NodeKeyPath(true, "org1.example.com", "peer0.org1.example.com")
		before, err := os.ReadFile(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		err = cryptogen.Generate(testNetwork(), l.Root)
		if !errors.Is(err, cryptogen.ErrOrgExists) {
			t.Fatalf("second Generate: err = %v, want ErrOrgExists", err)
		}
		if !strings.Contains(err.Error(), l.OrgDir(false, "example.com")) {
			t.Errorf("error %q does not name the folder", err)
		}
		after, err := os.ReadFile(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, after) {
			t.Error("existing key was overwritten")
		}
	})
	t.Run("one organisation present", func(t *testing.T) {
		l := cryptogen.Layout{Root: t.TempDir()}
		existing := l.OrgDir(true, "org2.example.com")
		if err := os.MkdirAll(existing, 0o755); err != nil {
			t.Fatal(err)
		}
		err := cryptogen.Generate(testNetwork(), l.Root)
		if !errors.Is(err, cryptogen.ErrOrgExists) || !strings.Contains(err.Error(), existing) {
			t.Fatalf("err = %v, want ErrOrgExists naming %s", err, existing)
		}
		// Nothing written for the other organisations either.
		for _, o := range []string{l.OrgDir(false, "example.com"), l.OrgDir(true, "org1.example.com")} {
			if _, err := os.Stat(o); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s was written despite the refusal (stat err %v)", o, err)
			}
		}
	})
}

func TestGenerateRejectsUnsafeNetworks(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(n *netconfig.Network)
		want   string
	}{
		{"nil network", nil, "no network"},
		{"domain escapes the tree", func(n *netconfig.Network) { n.PeerOrgs[0].Domain = "../evil" }, "domain"},
		{"empty domain", func(n *netconfig.Network) { n.OrdererOrgs[0].Domain = "" }, "domain"},
		{"domain with slash", func(n *netconfig.Network) { n.PeerOrgs[1].Domain = "org2/x" }, "domain"},
		{"node name with slash", func(n *netconfig.Network) { n.PeerOrgs[0].Peers[0].Name = "peer0/../x" }, "node name"},
		{"node name with dot", func(n *netconfig.Network) { n.PeerOrgs[0].Peers[0].Name = "peer0.x" }, "node name"},
		{"duplicate node", func(n *netconfig.Network) { n.PeerOrgs[0].Peers[1].Name = "peer0" }, "listed twice"},
		{"user escapes the tree", func(n *netconfig.Network) { n.PeerOrgs[0].Users = []string{"../../x"} }, "user"},
		{"user named like the admin", func(n *netconfig.Network) { n.PeerOrgs[0].Users = []string{"admin"} }, "listed twice"},
		{"duplicate user", func(n *netconfig.Network) { n.PeerOrgs[0].Users = []string{"User1", "User1"} }, "listed twice"},
		{"user with @", func(n *netconfig.Network) { n.PeerOrgs[0].Users = []string{"a@b"} }, "user"},
		{"two orgs share a domain", func(n *netconfig.Network) { n.PeerOrgs[1].Domain = "ORG1.example.com" }, "two organisations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n *netconfig.Network
			if tt.mutate != nil {
				n = testNetwork()
				tt.mutate(n)
			}
			dir := t.TempDir()
			err := cryptogen.Generate(n, dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("output folder not empty after a rejected network: %v", entries)
			}
		})
	}
}
