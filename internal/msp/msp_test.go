package msp_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/msp"
	"github.com/cairn-ledger/cairn/internal/msp/msptest"
)

func serialize(mspID string, certPEM []byte) []byte {
	b, _ := proto.Marshal(&mspproto.SerializedIdentity{Mspid: mspID, IdBytes: certPEM})
	return b
}

func TestDeserializeRoles(t *testing.T) {
	root := msptest.NewCA(t, "Org1MSP")
	inter := msptest.NewCA(t, "Org2MSP").NewIntermediate(t, "ica.org2")
	mgr := msptest.Manager(t, root, inter)
	for _, ca := range []*msptest.CA{root, inter} {
		for _, tc := range []struct {
			ou   string
			role mspproto.MSPRole_MSPRoleType
		}{
			{"client", mspproto.MSPRole_CLIENT},
			{"peer", mspproto.MSPRole_PEER},
			{"admin", mspproto.MSPRole_ADMIN},
			{"orderer", mspproto.MSPRole_ORDERER},
		} {
			t.Run(ca.MSPID+"/"+tc.ou, func(t *testing.T) {
				leaf := ca.Issue(t, tc.ou+"1", tc.ou)
				id, err := mgr.Deserialize(leaf.Serialize())
				if err != nil {
					t.Fatalf("Deserialize: %v", err)
				}
				if id.MSPID() != ca.MSPID {
					t.Fatalf("MSPID = %q", id.MSPID())
				}
				if r, ok := id.NodeRole(); !ok || r != tc.role {
					t.Fatalf("NodeRole = %v, %v; want %v", r, ok, tc.role)
				}
				if got := id.IsAdmin(); got != (tc.role == mspproto.MSPRole_ADMIN) {
					t.Fatalf("IsAdmin = %v", got)
				}
				if !id.ExpiresAt().Equal(leaf.Cert.NotAfter) {
					t.Fatalf("ExpiresAt = %v", id.ExpiresAt())
				}
				if string(id.Serialized()) != string(leaf.Serialize()) {
					t.Fatal("Serialized differs")
				}
				msg := []byte("proposal")
				if err := id.Verify(msg, leaf.Sign(t, msg)); err != nil {
					t.Fatalf("Verify: %v", err)
				}
			})
		}
	}
}

func TestDeserializeRejects(t *testing.T) {
	org1 := msptest.NewCA(t, "Org1MSP")
	inter := msptest.NewCA(t, "Org2MSP").NewIntermediate(t, "ica.org2")
	impostor := msptest.NewCA(t, "Org1MSP") // another CA claiming Org1MSP
	revoked := org1.Issue(t, "revoked", "client")
	org1.Revoke(t, revoked)
	mgr := msptest.Manager(t, org1, inter)

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384Cert := issueRaw(t, org1, &p384.PublicKey, []string{"client"}, false)

	tests := []struct {
		name     string
		in       []byte
		want     error
		contains string
	}{
		{"garbage", []byte{0xff, 0x01}, msp.ErrMalformedIdentity, "malformed identity"},
		{"not pem", serialize("Org1MSP", []byte("not a cert")), msp.ErrMalformedIdentity, "no PEM block"},
		{"unknown MSP", serialize("Org9MSP", org1.Issue(t, "x", "client").CertPEM), msp.ErrUnknownMSP, `unknown MSP "Org9MSP"`},
		{"other CA", impostor.Issue(t, "mallory", "client").Serialize(), msp.ErrUnknownIssuer, `not issued by any CA of the MSP "Org1MSP"`},
		{"revoked", revoked.Serialize(), msp.ErrRevoked, "revoked"},
		{"CA as identity", serialize("Org1MSP", org1.CertPEM), msp.ErrCAIdentity, "CA certificate"},
		{"leaf CA", org1.IssueWith(t, msptest.LeafOptions{Name: "subca", OUs: []string{"client"}, IsCA: true}).Serialize(), msp.ErrCAIdentity, ""},
		{"P-384", serialize("Org1MSP", p384Cert), msp.ErrUnsupportedKey, "P-384"},
		{"no node OU", org1.Issue(t, "nobody", "").Serialize(), msp.ErrInvalidOUs, "exactly one"},
		{"two node OUs", org1.IssueWith(t, msptest.LeafOptions{Name: "both", OUs: []string{"client", "peer"}}).Serialize(), msp.ErrInvalidOUs, ""},
		{"issued by root above intermediate", serialize("Org2MSP", inter.Root().Issue(t, "direct", "client").CertPEM), msp.ErrUnknownIssuer, "not a leaf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mgr.Deserialize(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("err %q does not mention %q", err, tc.contains)
			}
		})
	}
}

// issueRaw issues a leaf for an arbitrary public key.
func issueRaw(t *testing.T, ca *msptest.CA, pub any, ous []string, isCA bool) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "odd", OrganizationalUnit: ous},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestExpiredIdentityFollowsFabric(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	leaf := ca.IssueWith(t, msptest.LeafOptions{
		Name: "old", OUs: []string{"client"},
		NotBefore: time.Now().Add(-50 * time.Minute), NotAfter: time.Now().Add(-time.Minute),
	})
	id, err := msptest.Manager(t, ca).Deserialize(leaf.Serialize())
	if err != nil {
		t.Fatalf("Fabric's MSP accepts expired certificates (validation at NotBefore); got %v", err)
	}
	if err := id.CheckValidAt(time.Now()); !errors.Is(err, msp.ErrExpired) {
		t.Fatalf("CheckValidAt(now) = %v, want ErrExpired", err)
	}
	if err := id.CheckValidAt(leaf.Cert.NotBefore.Add(time.Minute)); err != nil {
		t.Fatalf("CheckValidAt(in validity) = %v", err)
	}
	if err := id.CheckValidAt(leaf.Cert.NotBefore.Add(-time.Minute)); !errors.Is(err, msp.ErrNotYetValid) {
		t.Fatalf("CheckValidAt(before) = %v", err)
	}
}

func highS(t *testing.T, sig []byte) []byte {
	t.Helper()
	var s struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &s); err != nil {
		t.Fatal(err)
	}
	s.S = new(big.Int).Sub(elliptic.P256().Params().N, s.S)
	b, _ := asn1.Marshal(s)
	return b
}

// verifyCases are the answers Identity.Verify must give for leaf's identity.
func verifyCases(t *testing.T, leaf *msptest.Leaf) []struct {
	name     string
	msg, sig []byte
	want     error
} {
	msg := []byte("envelope payload")
	sig := leaf.Sign(t, msg)
	tampered := append([]byte(nil), sig...)
	tampered[len(tampered)-2] ^= 0x40
	return []struct {
		name     string
		msg, sig []byte
		want     error
	}{
		{"valid", msg, sig, nil},
		{"high S", msg, highS(t, sig), crypto.ErrHighS},
		{"tampered signature", msg, tampered, crypto.ErrBadSignature},
		{"tampered message", []byte("envelope payloaD"), sig, crypto.ErrBadSignature},
		{"not DER", msg, []byte("sig"), crypto.ErrMalformedSignature},
		{"another signer", msg, msptest.NewCA(t, "Org1MSP").Issue(t, "peer0", "peer").Sign(t, msg), crypto.ErrBadSignature},
	}
}

func checkVerify(t *testing.T, id *msp.Identity, leaf *msptest.Leaf) {
	t.Helper()
	for _, tc := range verifyCases(t, leaf) {
		err := id.Verify(tc.msg, tc.sig)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Fatalf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// newIdentity issues a leaf of a fresh Org1MSP CA and deserialises it.
func newIdentity(t *testing.T, name, ou string) (*msp.Identity, *msptest.Leaf) {
	t.Helper()
	ca := msptest.NewCA(t, "Org1MSP")
	leaf := ca.Issue(t, name, ou)
	id, err := msptest.Manager(t, ca).Deserialize(leaf.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	return id, leaf
}

func TestVerify(t *testing.T) {
	id, leaf := newIdentity(t, "peer0", "peer")
	checkVerify(t, id, leaf)
}

// TestVerifyThroughKeyTable: a key that verifies often gets a precomputed
// table and gives exactly the same answers through it.
func TestVerifyThroughKeyTable(t *testing.T) {
	id, leaf := newIdentity(t, "client1", "client")
	msg := []byte("m")
	sig := leaf.Sign(t, msg)
	for i := 1; i < msp.HotKeyVerifies; i++ {
		if err := id.Verify(msg, sig); err != nil {
			t.Fatal(err)
		}
	}
	if msp.HasKeyTable(id) {
		t.Fatalf("table built before %d verifications", msp.HotKeyVerifies)
	}
	checkVerify(t, id, leaf)
	if !msp.HasKeyTable(id) {
		t.Fatalf("no table after %d verifications", msp.HotKeyVerifies)
	}
	for range 20 { // fresh signatures use other entries of the table
		msg := []byte(rand.Text())
		if err := id.Verify(msg, leaf.Sign(t, msg)); err != nil {
			t.Fatal(err)
		}
	}
	checkVerify(t, id, leaf)
}

// TestKeyTableBuiltUnderConcurrentVerification: goroutines crossing the
// threshold together build one table and all keep getting right answers.
func TestKeyTableBuiltUnderConcurrentVerification(t *testing.T) {
	id, leaf := newIdentity(t, "client1", "client")
	msg := []byte("m")
	sig, bad := leaf.Sign(t, msg), highS(t, leaf.Sign(t, msg))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range msp.HotKeyVerifies / 2 {
				if err := id.Verify(msg, sig); err != nil {
					errs <- err
					return
				}
				if err := id.Verify(msg, bad); !errors.Is(err, crypto.ErrHighS) {
					errs <- fmt.Errorf("Verify(high S) = %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !msp.HasKeyTable(id) {
		t.Fatal("no table after concurrent verifications")
	}
}

// heatIdentity issues a client identity of ca, deserialises it through mgr
// and verifies one of its signatures HotKeyVerifies times, enough to earn a
// key table; it returns the identity and the signature (over "m").
func heatIdentity(t *testing.T, ca *msptest.CA, mgr *msp.Manager, name string) (*msp.Identity, []byte) {
	t.Helper()
	leaf := ca.Issue(t, name, "client")
	id, err := mgr.Deserialize(leaf.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("m")
	sig := leaf.Sign(t, msg)
	for range msp.HotKeyVerifies {
		if err := id.Verify(msg, sig); err != nil {
			t.Fatal(err)
		}
	}
	return id, sig
}

// TestKeyTablesBoundedPerMSP: an MSP hands out at most MaxKeyTables tables,
// and identities past the budget keep verifying correctly without one.
func TestKeyTablesBoundedPerMSP(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	m := msptest.Manager(t, ca)
	tables := 0
	for i := range msp.MaxKeyTables + 3 {
		id, sig := heatIdentity(t, ca, m, fmt.Sprint("user", i))
		if msp.HasKeyTable(id) {
			tables++
		} else if err := id.Verify([]byte("m"), highS(t, sig)); !errors.Is(err, crypto.ErrHighS) {
			t.Fatalf("without a table: Verify(high S) = %v", err)
		}
	}
	if tables != msp.MaxKeyTables {
		t.Fatalf("%d identities got tables, want %d", tables, msp.MaxKeyTables)
	}
}

// TestKeyTableSlotsComeBack: once the identities holding an MSP's tables are
// gone (evicted from the identity cache, no longer referenced), new hot
// signers get tables again.
func TestKeyTableSlotsComeBack(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	m := ca.MSP(t)
	mgr := msp.NewManagerWithCache(1, m) // each new identity evicts the last
	heat := func(name string) *msp.Identity {
		id, _ := heatIdentity(t, ca, mgr, name)
		return id
	}
	for i := range msp.MaxKeyTables {
		if !msp.HasKeyTable(heat(fmt.Sprint("user", i))) {
			t.Fatalf("identity %d got no table", i)
		}
	}
	// Every identity above is unreferenced now but the last, which the cache
	// holds; their cleanups give the slots back after a collection.
	deadline := time.Now().Add(10 * time.Second)
	for msp.KeyTablesInUse(m) > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d key tables still taken after their identities went", msp.KeyTablesInUse(m))
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if !msp.HasKeyTable(heat("newcomer")) {
		t.Fatal("a new hot signer got no table although the old ones are gone")
	}
}

func rolePrincipal(mspID string, r mspproto.MSPRole_MSPRoleType) *mspproto.MSPPrincipal {
	b, _ := proto.Marshal(&mspproto.MSPRole{MspIdentifier: mspID, Role: r})
	return &mspproto.MSPPrincipal{PrincipalClassification: mspproto.MSPPrincipal_ROLE, Principal: b}
}

func TestSatisfiesPrincipalRoles(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	mgr := msptest.Manager(t, ca)
	ids := map[string]*msp.Identity{}
	for _, ou := range []string{"client", "peer", "admin", "orderer"} {
		id, err := mgr.Deserialize(ca.Issue(t, ou+"0", ou).Serialize())
		if err != nil {
			t.Fatal(err)
		}
		ids[ou] = id
	}
	roles := map[string]mspproto.MSPRole_MSPRoleType{
		"member": mspproto.MSPRole_MEMBER, "admin": mspproto.MSPRole_ADMIN, "client": mspproto.MSPRole_CLIENT,
		"peer": mspproto.MSPRole_PEER, "orderer": mspproto.MSPRole_ORDERER,
	}
	for idRole, id := range ids {
		for pRole, r := range roles {
			t.Run(idRole+" as "+pRole, func(t *testing.T) {
				err := id.SatisfiesPrincipal(rolePrincipal("Org1MSP", r))
				want := pRole == "member" || pRole == idRole
				if want && err != nil {
					t.Fatalf("want satisfied, got %v", err)
				}
				if !want {
					if !errors.Is(err, msp.ErrWrongRole) || !errors.Is(err, msp.ErrPrincipalNotSatisfied) {
						t.Fatalf("want ErrWrongRole, got %v", err)
					}
					if !strings.Contains(err.Error(), "has role "+idRole+", needs "+pRole) {
						t.Fatalf("message %q does not explain the roles", err)
					}
				}
			})
		}
	}
	err := ids["peer"].SatisfiesPrincipal(rolePrincipal("Org2MSP", mspproto.MSPRole_MEMBER))
	if !errors.Is(err, msp.ErrWrongMSP) || !strings.Contains(err.Error(), `needs MSP "Org2MSP"`) {
		t.Fatalf("other MSP: %v", err)
	}
	if err := ids["peer"].SatisfiesPrincipal(&mspproto.MSPPrincipal{PrincipalClassification: mspproto.MSPPrincipal_ROLE, Principal: []byte{0xff}}); !errors.Is(err, msp.ErrInvalidPrincipal) {
		t.Fatalf("garbage principal: %v", err)
	}
}

func TestAdminCertsAndNoNodeOUs(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	admin := ca.Issue(t, "legacy-admin", "")
	user := ca.Issue(t, "user", "")
	conf := ca.Config(t)
	conf.FabricNodeOus = nil
	conf.Admins = [][]byte{admin.CertPEM}
	m, err := msp.New(conf)
	if err != nil {
		t.Fatal(err)
	}
	mgr := msp.NewManager(m)
	aid, err := mgr.Deserialize(admin.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	uid, err := mgr.Deserialize(user.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	if err := aid.SatisfiesPrincipal(rolePrincipal("Org1MSP", mspproto.MSPRole_ADMIN)); err != nil {
		t.Fatalf("admincert admin: %v", err)
	}
	if err := uid.SatisfiesPrincipal(rolePrincipal("Org1MSP", mspproto.MSPRole_ADMIN)); !errors.Is(err, msp.ErrWrongRole) {
		t.Fatalf("non-admin as admin: %v", err)
	}
	if err := uid.SatisfiesPrincipal(rolePrincipal("Org1MSP", mspproto.MSPRole_MEMBER)); err != nil {
		t.Fatalf("member: %v", err)
	}
	err = uid.SatisfiesPrincipal(rolePrincipal("Org1MSP", mspproto.MSPRole_PEER))
	if !errors.Is(err, msp.ErrWrongRole) || !strings.Contains(err.Error(), "NodeOUs are not enabled") {
		t.Fatalf("peer without NodeOUs: %v", err)
	}
}

func TestOUIdentityCombinedPrincipals(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	mgr := msptest.Manager(t, ca)
	peer := ca.IssueWith(t, msptest.LeafOptions{Name: "peer0", OUs: []string{"peer", "dept1"}})
	other := ca.Issue(t, "peer1", "peer")
	id, err := mgr.Deserialize(peer.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	ouPrincipal := func(ou string, certifiers []byte) *mspproto.MSPPrincipal {
		b, _ := proto.Marshal(&mspproto.OrganizationUnit{MspIdentifier: "Org1MSP", OrganizationalUnitIdentifier: ou, CertifiersIdentifier: certifiers})
		return &mspproto.MSPPrincipal{PrincipalClassification: mspproto.MSPPrincipal_ORGANIZATION_UNIT, Principal: b}
	}
	idPrincipal := func(l *msptest.Leaf) *mspproto.MSPPrincipal {
		return &mspproto.MSPPrincipal{PrincipalClassification: mspproto.MSPPrincipal_IDENTITY, Principal: l.Serialize()}
	}
	combined := func(ps ...*mspproto.MSPPrincipal) *mspproto.MSPPrincipal {
		b, _ := proto.Marshal(&mspproto.CombinedPrincipal{Principals: ps})
		return &mspproto.MSPPrincipal{PrincipalClassification: mspproto.MSPPrincipal_COMBINED, Principal: b}
	}
	// The same certificate re-encoded (PEM with different framing) is the same identity.
	reencoded := *peer
	reencoded.CertPEM = append([]byte("\n"), peer.CertPEM...)
	tests := []struct {
		name string
		p    *mspproto.MSPPrincipal
		ok   bool
	}{
		{"ou match", ouPrincipal("dept1", id.CertifiersIdentifier()), true},
		{"ou wrong certifiers", ouPrincipal("dept1", []byte("nope")), false},
		{"ou missing", ouPrincipal("dept2", id.CertifiersIdentifier()), false},
		{"identity same", idPrincipal(peer), true},
		{"identity same cert other bytes", idPrincipal(&reencoded), true},
		{"identity other", idPrincipal(other), false},
		{"combined ok", combined(rolePrincipal("Org1MSP", mspproto.MSPRole_PEER), ouPrincipal("dept1", id.CertifiersIdentifier())), true},
		{"combined one fails", combined(rolePrincipal("Org1MSP", mspproto.MSPRole_PEER), rolePrincipal("Org1MSP", mspproto.MSPRole_ADMIN)), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := id.SatisfiesPrincipal(tc.p)
			if (err == nil) != tc.ok {
				t.Fatalf("SatisfiesPrincipal = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestNodeOUCertifierRestriction(t *testing.T) {
	root := msptest.NewCA(t, "Org1MSP")
	icaA := root.NewIntermediate(t, "ica-a")
	icaB := root.NewIntermediate(t, "ica-b")
	conf := root.Config(t)
	conf.IntermediateCerts = [][]byte{icaA.CertPEM, icaB.CertPEM}
	// Only ica-a may issue peers.
	conf.FabricNodeOus.PeerOuIdentifier.Certificate = icaA.CertPEM
	m, err := msp.New(conf)
	if err != nil {
		t.Fatal(err)
	}
	mgr := msp.NewManager(m)
	if _, err := mgr.Deserialize(icaA.Issue(t, "peer-a", "peer").Serialize()); err != nil {
		t.Fatalf("peer from the configured CA: %v", err)
	}
	if _, err := mgr.Deserialize(icaB.Issue(t, "peer-b", "peer").Serialize()); !errors.Is(err, msp.ErrInvalidOUs) {
		t.Fatalf("peer from another CA: %v", err)
	}
	if _, err := mgr.Deserialize(icaB.Issue(t, "client-b", "client").Serialize()); err != nil {
		t.Fatalf("client from any CA: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	leaf := ca.Issue(t, "u", "client")
	other := msptest.NewCA(t, "X")
	tests := []struct {
		name   string
		mutate func(*mspproto.FabricMSPConfig)
		want   string
	}{
		{"no name", func(c *mspproto.FabricMSPConfig) { c.Name = "" }, "name"},
		{"no roots", func(c *mspproto.FabricMSPConfig) { c.RootCerts = nil }, "at least one root"},
		{"leaf as root", func(c *mspproto.FabricMSPConfig) { c.RootCerts = [][]byte{leaf.CertPEM} }, "not a CA"},
		{"garbage root", func(c *mspproto.FabricMSPConfig) { c.RootCerts = [][]byte{[]byte("x")} }, "root CA certificate 0"},
		{"foreign intermediate", func(c *mspproto.FabricMSPConfig) {
			c.IntermediateCerts = [][]byte{other.NewIntermediate(t, "i").CertPEM}
		}, "intermediate CA certificate 0"},
		{"bad crl", func(c *mspproto.FabricMSPConfig) { c.RevocationList = [][]byte{[]byte("x")} }, "revocation list 0"},
		{"nodeou cert not a CA of the MSP", func(c *mspproto.FabricMSPConfig) {
			c.FabricNodeOus.ClientOuIdentifier.Certificate = other.CertPEM
		}, "not a root or intermediate CA"},
		{"admin from other CA", func(c *mspproto.FabricMSPConfig) {
			c.Admins = [][]byte{other.Issue(t, "a", "admin").CertPEM}
		}, "admin certificate 0"},
		{"admin that is a peer", func(c *mspproto.FabricMSPConfig) {
			c.Admins = [][]byte{ca.Issue(t, "p", "peer").CertPEM}
		}, "client or admin"},
		{"sha3", func(c *mspproto.FabricMSPConfig) { c.CryptoConfig.SignatureHashFamily = "SHA3" }, "SHA3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf := ca.Config(t)
			tc.mutate(conf)
			_, err := msp.New(conf)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestFromConfigMSP(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	b, _ := proto.Marshal(ca.Config(t))
	m, err := msp.FromConfigMSP(&mspproto.MSPConfig{Type: 0, Config: b})
	if err != nil || m.ID() != "Org1MSP" || !m.NodeOUsEnabled() {
		t.Fatalf("FromConfigMSP = %v, %v", m, err)
	}
	if _, err := msp.FromConfigMSP(&mspproto.MSPConfig{Type: 1, Config: b}); err == nil {
		t.Fatal("idemix type accepted")
	}
	if _, err := msp.FromConfigMSP(&mspproto.MSPConfig{Config: []byte{0xff}}); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestLoadMSPConfigDir(t *testing.T) {
	for _, withIntermediate := range []bool{false, true} {
		t.Run(map[bool]string{false: "root", true: "intermediate"}[withIntermediate], func(t *testing.T) {
			ca := msptest.NewCA(t, "Org1MSP")
			if withIntermediate {
				ca = ca.NewIntermediate(t, "ica")
			}
			signer := ca.Issue(t, "peer0", "peer")
			ca.Revoke(t, ca.Issue(t, "gone", "client"))
			dir := t.TempDir()
			ca.WriteMSPDir(t, dir, signer)

			conf, err := msp.LoadMSPConfigDir(dir, "Org1MSP")
			if err != nil {
				t.Fatal(err)
			}
			if len(conf.RevocationList) != 1 || len(conf.FabricNodeOus.GetPeerOuIdentifier().GetCertificate()) == 0 {
				t.Fatalf("config incomplete: %v", conf)
			}
			m, err := msp.New(conf)
			if err != nil {
				t.Fatal(err)
			}
			si, err := crypto.LoadSigningIdentity("Org1MSP", dir)
			if err != nil {
				t.Fatal(err)
			}
			id, err := msp.NewManager(m).Deserialize(si.Serialize())
			if err != nil {
				t.Fatal(err)
			}
			if err := id.SatisfiesPrincipal(rolePrincipal("Org1MSP", mspproto.MSPRole_PEER)); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := msp.LoadMSPConfigDir(t.TempDir(), "Org1MSP"); err == nil || !strings.Contains(err.Error(), "cacerts") {
		t.Fatalf("empty dir: %v", err)
	}
}

func TestManager(t *testing.T) {
	a, b := msptest.NewCA(t, "B"), msptest.NewCA(t, "A")
	mgr := msptest.Manager(t, a, b)
	if got := strings.Join(mgr.IDs(), ","); got != "A,B" {
		t.Fatalf("IDs = %s", got)
	}
	if m, ok := mgr.MSP("A"); !ok || m.ID() != "A" {
		t.Fatal("MSP(A) missing")
	}
	leaf := a.Issue(t, "u", "client")
	first, err := mgr.Deserialize(leaf.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	second, _ := mgr.Deserialize(leaf.Serialize())
	if first != second {
		t.Fatal("second Deserialize did not hit the cache")
	}
}

func TestDeserializeConcurrent(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	mgr := msp.NewManagerWithCache(4, ca.MSP(t))
	var leaves [][]byte
	for i := range 10 {
		leaves = append(leaves, ca.Issue(t, "u"+string(rune('0'+i)), "client").Serialize())
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if _, err := mgr.Deserialize(leaves[(i+g)%len(leaves)]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzDeserialize(f *testing.F) {
	ca := msptest.NewCA(f, "Org1MSP")
	mgr := msptest.Manager(f, ca)
	good := ca.Issue(f, "peer0", "peer")
	f.Add(good.Serialize())
	f.Add(serialize("Org1MSP", ca.CertPEM))
	f.Add(serialize("Org1MSP", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")))
	f.Add(serialize("Nope", good.CertPEM))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := mgr.Deserialize(b)
		if err != nil {
			return
		}
		if id.MSPID() != "Org1MSP" {
			t.Fatalf("accepted identity of MSP %q", id.MSPID())
		}
		_ = id.Verify([]byte("m"), []byte("s"))
		_ = id.SatisfiesPrincipal(rolePrincipal("Org1MSP", mspproto.MSPRole_PEER))
		_ = id.String()
	})
}

func BenchmarkDeserializeCached(b *testing.B) {
	ca := msptest.NewCA(b, "Org1MSP")
	mgr := msptest.Manager(b, ca)
	ser := ca.Issue(b, "peer0", "peer").Serialize()
	if _, err := mgr.Deserialize(ser); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mgr.Deserialize(ser); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeserializeUncached(b *testing.B) {
	ca := msptest.NewCA(b, "Org1MSP").NewIntermediate(b, "ica")
	mgr := msp.NewManagerWithCache(0, ca.MSP(b))
	ser := ca.Issue(b, "peer0", "peer").Serialize()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mgr.Deserialize(ser); err != nil {
			b.Fatal(err)
		}
	}
}
