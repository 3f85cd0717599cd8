// Package cryptogen owns the static crypto material of a consortium: one
// signing CA and one TLS CA per organisation, the organisation's verifying
// MSP, and a local MSP plus TLS key pair for every orderer, peer, admin and
// user. It writes them in the folder shape Fabric's cryptogen tool writes
// (see Layout), with NodeOUs enabled, so Fabric operators and unmodified
// Fabric tools find everything where they expect it. Keys are ECDSA P-256.
package cryptogen

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// ErrOrgExists is returned (wrapped, with the folder's path) when an
// organisation's folder is already present in the output folder. Generate
// never overwrites key material.
var ErrOrgExists = errors.New("organisation folder already exists, refusing to overwrite it")

// The NodeOUs organisational units cryptogen stamps on enrollment
// certificates; channel policies such as "OR('Org1MSP.peer')" match them.
const (
	ouClient  = "client"
	ouPeer    = "peer"
	ouAdmin   = "admin"
	ouOrderer = "orderer"
)

// Generate writes the crypto material of every organisation of net below
// outDir, laid out as Layout{Root: outDir} describes. It checks every
// organisation's folder before writing anything and fails with ErrOrgExists
// if one is present; if writing fails part-way, the organisation folders it
// created are removed again.
func Generate(net *netconfig.Network, outDir string) error {
	if net == nil {
		return errors.New("generate crypto material: no network description")
	}
	if outDir == "" {
		return errors.New("generate crypto material: no output folder")
	}
	orgs, err := planOrgs(net)
	if err != nil {
		return fmt.Errorf("generate crypto material: %w", err)
	}
	l := Layout{Root: outDir}
	for _, o := range orgs {
		dir := l.OrgDir(o.peerOrg, o.domain)
		if _, err := os.Lstat(dir); err == nil {
			return fmt.Errorf("generate crypto material: %w: %s", ErrOrgExists, dir)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("generate crypto material: check %s: %w", dir, err)
		}
	}

	v := newValidity(time.Now())
	var created []string
	for _, o := range orgs {
		dir := l.OrgDir(o.peerOrg, o.domain)
		if err := claimDir(dir); err != nil {
			return errors.Join(fmt.Errorf("generate crypto material: %w", err), removeAll(created))
		}
		created = append(created, dir)
		if err := writeOrg(l, o, v); err != nil {
			return errors.Join(fmt.Errorf("generate crypto material for %s: %w", o, err), removeAll(created))
		}
	}
	return nil
}

func removeAll(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("clean up %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// orgPlan is one organisation reduced to what its material depends on.
type orgPlan struct {
	peerOrg bool
	domain  string
	nodes   []netconfig.Node
	// users are short names, AdminUser first.
	users []string
}

func (o orgPlan) String() string {
	if o.peerOrg {
		return "peer organisation " + o.domain
	}
	return "orderer organisation " + o.domain
}

// planOrgs checks that every name that becomes a path or a certificate name
// is safe and unique, since the network description is user input.
func planOrgs(net *netconfig.Network) ([]orgPlan, error) {
	var (
		plans []orgPlan
		errs  []error
	)
	seenDomain := map[string]bool{}
	add := func(peerOrg bool, domain string, nodes []netconfig.Node, users []string) {
		p := orgPlan{peerOrg: peerOrg, domain: domain, nodes: nodes, users: append([]string{AdminUser}, users...)}
		if err := validHostname(domain); err != nil {
			errs = append(errs, fmt.Errorf("%s: domain: %w", p, err))
			return
		}
		key := fmt.Sprintf("%t/%s", peerOrg, strings.ToLower(domain))
		if seenDomain[key] {
			errs = append(errs, fmt.Errorf("%s: domain used by two organisations", p))
		}
		seenDomain[key] = true
		seenNode := map[string]bool{}
		for _, n := range nodes {
			if err := validLabel(n.Name); err != nil {
				errs = append(errs, fmt.Errorf("%s: node name %q: %w", p, n.Name, err))
				continue
			}
			if seenNode[strings.ToLower(n.Name)] {
				errs = append(errs, fmt.Errorf("%s: node %q listed twice", p, n.Name))
			}
			seenNode[strings.ToLower(n.Name)] = true
		}
		seenUser := map[string]bool{}
		for _, u := range p.users {
			if err := validUser(u); err != nil {
				errs = append(errs, fmt.Errorf("%s: user %q: %w", p, u, err))
				continue
			}
			// Case-insensitive: User1@ and user1@ would share a folder on
			// macOS and Windows file systems.
			if seenUser[strings.ToLower(u)] {
				errs = append(errs, fmt.Errorf("%s: user %q listed twice (%s is always generated)", p, u, AdminUser))
			}
			seenUser[strings.ToLower(u)] = true
		}
		plans = append(plans, p)
	}
	for _, o := range net.OrdererOrgs {
		add(false, o.Domain, o.Orderers, nil)
	}
	for _, o := range net.PeerOrgs {
		add(true, o.Domain, o.Peers, o.Users)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return plans, nil
}

func validHostname(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, label := range strings.Split(s, ".") {
		if err := validLabel(label); err != nil {
			return fmt.Errorf("label %q: %w", label, err)
		}
	}
	return nil
}

// validLabel accepts one DNS label. Underscores are tolerated because
// operators use them in host names and Go's TLS stack accepts them.
func validLabel(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 63 {
		return errors.New("longer than 63 characters")
	}
	for _, r := range s {
		if !isAlnum(r) && r != '-' && r != '_' {
			return fmt.Errorf("character %q not allowed (letters, digits, '-' and '_' only)", r)
		}
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return errors.New("starts or ends with '-'")
	}
	return nil
}

func validUser(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if s == "." || s == ".." {
		return errors.New("not a valid name")
	}
	for _, r := range s {
		if !isAlnum(r) && r != '-' && r != '_' && r != '.' {
			return fmt.Errorf("character %q not allowed (letters, digits, '-', '_' and '.' only)", r)
		}
	}
	return nil
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// writeOrg writes one organisation into its (already created) folder.
func writeOrg(l Layout, o orgPlan, v validity) error {
	signCA, err := newAuthority(caName(o.domain), o.domain, v)
	if err != nil {
		return err
	}
	tlsCA, err := newAuthority(tlsCAName(o.domain), o.domain, v)
	if err != nil {
		return err
	}
	for _, w := range []struct {
		ca                *authority
		certPath, keyPath string
	}{
		{signCA, l.CACertPath(o.peerOrg, o.domain), l.CAKeyPath(o.peerOrg, o.domain)},
		{tlsCA, l.TLSCACertPath(o.peerOrg, o.domain), l.TLSCAKeyPath(o.peerOrg, o.domain)},
	} {
		if err := writeCert(w.certPath, w.ca.cert); err != nil {
			return err
		}
		if err := writeKey(w.keyPath, w.ca.key); err != nil {
			return err
		}
	}
	if err := writeMSPBase(l.OrgMSPDir(o.peerOrg, o.domain), o.domain, signCA, tlsCA); err != nil {
		return fmt.Errorf("organisation MSP: %w", err)
	}

	nodeOU := ouOrderer
	if o.peerOrg {
		nodeOU = ouPeer
	}
	for _, n := range o.nodes {
		full := n.FullName(o.domain)
		id := identity{
			commonName:   full,
			orgUnit:      nodeOU,
			mspDir:       l.NodeMSPDir(o.peerOrg, o.domain, full),
			signCertPath: l.NodeSignCertPath(o.peerOrg, o.domain, full),
			keyPath:      l.NodeKeyPath(o.peerOrg, o.domain, full),
			tlsCACert:    l.NodeTLSCACertPath(o.peerOrg, o.domain, full),
			tlsCert:      l.NodeTLSCertPath(o.peerOrg, o.domain, full),
			tlsKey:       l.NodeTLSKeyPath(o.peerOrg, o.domain, full),
			sans:         nodeSANs(n, o.domain),
		}
		if err := writeIdentity(id, o.domain, signCA, tlsCA); err != nil {
			return fmt.Errorf("node %s: %w", full, err)
		}
	}
	for _, u := range o.users {
		ou := ouClient
		if u == AdminUser {
			ou = ouAdmin
		}
		id := identity{
			commonName:   UserName(u, o.domain),
			orgUnit:      ou,
			mspDir:       l.UserMSPDir(o.peerOrg, o.domain, u),
			signCertPath: l.UserSignCertPath(o.peerOrg, o.domain, u),
			keyPath:      l.UserKeyPath(o.peerOrg, o.domain, u),
			tlsCACert:    l.UserTLSCACertPath(o.peerOrg, o.domain, u),
			tlsCert:      l.UserTLSCertPath(o.peerOrg, o.domain, u),
			tlsKey:       l.UserTLSKeyPath(o.peerOrg, o.domain, u),
		}
		if err := writeIdentity(id, o.domain, signCA, tlsCA); err != nil {
			return fmt.Errorf("user %s: %w", id.commonName, err)
		}
	}
	return nil
}

// nodeSANs are the names a node's TLS certificate is valid for: its full
// and short names, the loopback names a local network dials, and the host it
// listens on when that is something else.
func nodeSANs(n netconfig.Node, domain string) []string {
	sans := []string{n.FullName(domain), n.Name, "localhost", "127.0.0.1"}
	host := strings.TrimSpace(n.Host)
	if host == "" || host == "0.0.0.0" || host == "::" || host == "[::]" {
		return sans
	}
	for _, s := range sans {
		if strings.EqualFold(s, host) {
			return sans
		}
	}
	return append(sans, host)
}

// identity is one local MSP with its TLS pair.
type identity struct {
	commonName string
	orgUnit    string

	mspDir, signCertPath, keyPath string
	tlsCACert, tlsCert, tlsKey    string
	// sans are set for nodes only; cryptogen gives client TLS
	// certificates none, and Go does not check client certificate names.
	sans []string
}

func writeIdentity(id identity, domain string, signCA, tlsCA *authority) error {
	cert, key, err := signCA.issue(leafSpec{
		commonName: id.commonName,
		orgUnits:   []string{id.orgUnit},
		keyUsage:   x509.KeyUsageDigitalSignature,
	})
	if err != nil {
		return err
	}
	if err := writeMSPBase(id.mspDir, domain, signCA, tlsCA); err != nil {
		return fmt.Errorf("local MSP: %w", err)
	}
	if err := writeCert(id.signCertPath, cert); err != nil {
		return err
	}
	if err := writeKey(id.keyPath, key); err != nil {
		return err
	}

	tlsCert, tlsKey, err := tlsCA.issue(leafSpec{
		commonName: id.commonName,
		sans:       id.sans,
		keyUsage:   x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		// Both usages on every TLS certificate: orderers dial each other with
		// their server certificate, and cryptogen does the same for users.
		extKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return err
	}
	if err := writeCert(id.tlsCACert, tlsCA.cert); err != nil {
		return err
	}
	if err := writeCert(id.tlsCert, tlsCert); err != nil {
		return err
	}
	return writeKey(id.tlsKey, tlsKey)
}

// writeMSPBase writes what a verifying MSP and a local MSP share: the CA
// certificates, an empty admincerts (NodeOUs make admins known by their OU),
// and config.yaml. A local MSP's signcerts and keystore are added by the
// caller.
func writeMSPBase(mspDir, domain string, signCA, tlsCA *authority) error {
	if err := mkdirs(filepath.Join(mspDir, "admincerts")); err != nil {
		return err
	}
	caFile := filepath.Join("cacerts", certFileName(caName(domain)))
	if err := writeCert(filepath.Join(mspDir, caFile), signCA.cert); err != nil {
		return err
	}
	if err := writeCert(filepath.Join(mspDir, "tlscacerts", certFileName(tlsCAName(domain))), tlsCA.cert); err != nil {
		return err
	}
	cfg, err := nodeOUsConfig(filepath.ToSlash(caFile))
	if err != nil {
		return err
	}
	return writeNew(filepath.Join(mspDir, NodeOUsFileName), cfg, certMode)
}

// mspConfig mirrors the YAML shape of Fabric's msp.Configuration, of which
// only NodeOUs is used here.
type mspConfig struct {
	NodeOUs nodeOUs `yaml:"NodeOUs"`
}

type nodeOUs struct {
	Enable              bool         `yaml:"Enable"`
	ClientOUIdentifier  ouIdentifier `yaml:"ClientOUIdentifier"`
	PeerOUIdentifier    ouIdentifier `yaml:"PeerOUIdentifier"`
	AdminOUIdentifier   ouIdentifier `yaml:"AdminOUIdentifier"`
	OrdererOUIdentifier ouIdentifier `yaml:"OrdererOUIdentifier"`
}

type ouIdentifier struct {
	// Certificate is relative to the MSP folder, with forward slashes, as
	// Fabric resolves it.
	Certificate                  string `yaml:"Certificate"`
	OrganizationalUnitIdentifier string `yaml:"OrganizationalUnitIdentifier"`
}

func nodeOUsConfig(caFile string) ([]byte, error) {
	id := func(ou string) ouIdentifier {
		return ouIdentifier{Certificate: caFile, OrganizationalUnitIdentifier: ou}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	// Two-space indentation, as in the config.yaml files cryptogen and the
	// Fabric samples write.
	enc.SetIndent(2)
	err := enc.Encode(mspConfig{NodeOUs: nodeOUs{
		Enable:              true,
		ClientOUIdentifier:  id(ouClient),
		PeerOUIdentifier:    id(ouPeer),
		AdminOUIdentifier:   id(ouAdmin),
		OrdererOUIdentifier: id(ouOrderer),
	}})
	if err == nil {
		err = enc.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", NodeOUsFileName, err)
	}
	return buf.Bytes(), nil
}
