package channel

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	fabconfigtx "github.com/hyperledger/fabric-config/configtx"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/configtx"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/policy"
)

const (
	ICT = pb.TxValidationCode_INVALID_CONFIG_TRANSACTION
	BCS = pb.TxValidationCode_BAD_CREATOR_SIGNATURE
)

// configEnv is a commitEnv with the identities that sign config updates and
// Org3 as fabric-config describes it, ready to be added.
type configEnv struct {
	*commitEnv
	org3                                          fabconfigtx.Organization
	org1Admin, org2Admin, org3Admin, ordererAdmin *crypto.SigningIdentity
	org2User, org3User                            *crypto.SigningIdentity
}

func newConfigEnv(t *testing.T) *configEnv {
	t.Helper()
	e := &configEnv{commitEnv: newCommitEnv(t)}
	full, err := channelconfig.Genesis(e.net, e.crypt)
	if err != nil {
		t.Fatal(err)
	}
	ce, err := block.Config(full)
	if err != nil {
		t.Fatal(err)
	}
	fullTx := fabconfigtx.New(ce.Config)
	if e.org3, err = fullTx.Application().Organization("Org3MSP").Configuration(); err != nil {
		t.Fatal(err)
	}
	l := cryptogen.Layout{Root: e.crypt}
	user := func(mspID, domain, name string) *crypto.SigningIdentity {
		return e.load(mspID, l.UserMSPDir(true, domain, name))
	}
	e.org1Admin = user("Org1MSP", org1Domain, cryptogen.AdminUser)
	e.org2Admin = user("Org2MSP", org2Domain, cryptogen.AdminUser)
	e.org3Admin = user("Org3MSP", "org3.example.com", cryptogen.AdminUser)
	e.org2User = user("Org2MSP", org2Domain, "User1")
	e.org3User = user("Org3MSP", "org3.example.com", "User1")
	e.ordererAdmin = e.load("OrdererMSP", l.UserMSPDir(false, "example.com", cryptogen.AdminUser))
	return e
}

// update is the CONFIG_UPDATE applying m to the configuration in force,
// signed by signers (the first also signs the envelope).
func (e *configEnv) update(t *testing.T, m func(*fabconfigtx.ConfigTx) error, signers ...*crypto.SigningIdentity) *cb.Envelope {
	t.Helper()
	cur := e.c.Bundle().Config()
	tx := fabconfigtx.New(cur)
	if err := m(&tx); err != nil {
		t.Fatal(err)
	}
	ss := make([]configtx.Signer, len(signers))
	for i, s := range signers {
		ss[i] = s
	}
	env, err := configtx.NewUpdateEnvelope(e.c.ID(), cur, tx.UpdatedConfig(), ss...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// propose is what the orderer makes of an update it accepts: the next
// configuration with the update as its LastUpdate.
func (e *configEnv) propose(t *testing.T, update *cb.Envelope) *cb.ConfigEnvelope {
	t.Helper()
	ce, err := configtx.ProposeUpdate(e.c.Bundle(), update)
	if err != nil {
		t.Fatalf("the orderer would refuse the update: %v", err)
	}
	return ce
}

// configTx wraps a config envelope as the orderer does: a CONFIG envelope of
// channel, signed by an orderer.
func (e *configEnv) configTx(t *testing.T, channel string, ce *cb.ConfigEnvelope) []byte {
	t.Helper()
	env, err := envelope.NewSignedEnvelope(cb.HeaderType_CONFIG, channel, e.orderer, ce)
	if err != nil {
		t.Fatal(err)
	}
	return marshal(t, env)
}

// commitChain commits one block per entry of blocks in a single pipelined
// CommitBlocks run (block N+1 is prepared while block N commits, except
// after a config block) and returns each block's stored codes.
func (e *configEnv) commitChain(t *testing.T, blocks ...[][]byte) [][]pb.TxValidationCode {
	t.Helper()
	l := e.c.Ledger()
	prev, err := l.Block(l.Height() - 1)
	if err != nil {
		t.Fatal(err)
	}
	var bs []*cb.Block
	for _, data := range blocks {
		b := block.New(prev.Header.Number+1, block.HeaderHash(prev.Header), data)
		bs = append(bs, b)
		prev = b
	}
	if err := e.c.CommitBlocks(context.Background(), bs); err != nil {
		t.Fatalf("commit: %v", err)
	}
	var out [][]pb.TxValidationCode
	for _, b := range bs {
		stored, err := l.Block(b.Header.Number)
		if err != nil {
			t.Fatal(err)
		}
		var codes []pb.TxValidationCode
		for _, f := range block.TxFilter(stored) {
			codes = append(codes, pb.TxValidationCode(f))
		}
		out = append(out, codes)
	}
	return out
}

// satisfies evaluates the channel policy at path, in the configuration in
// force, against a signature by id.
func (e *configEnv) satisfies(t *testing.T, path string, id *crypto.SigningIdentity) bool {
	t.Helper()
	p, err := e.c.Bundle().Policies().Policy(path)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("signed data")
	sig, err := id.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	return p.Evaluate([]policy.SignedData{{Data: data, Identity: id.Serialize(), Signature: sig}}) == nil
}

func addOrg3(e *configEnv) func(*fabconfigtx.ConfigTx) error {
	return func(tx *fabconfigtx.ConfigTx) error {
		if err := tx.Application().SetOrganization(e.org3); err != nil {
			return err
		}
		return tx.Application().Organization("Org3MSP").AddAnchorPeer(fabconfigtx.Address{Host: "127.0.0.1", Port: 10051})
	}
}

func setACL(resource, policy string) func(*fabconfigtx.ConfigTx) error {
	return func(tx *fabconfigtx.ConfigTx) error {
		return tx.Application().SetACLs(map[string]string{resource: policy})
	}
}

// TestConfigBlocks commits config blocks through the channel's commit path
// (validator + ledger, pipelined) and checks that exactly the VALID ones
// change the configuration in force, and that the change takes effect from
// the next block on: MSPs and policies for validation, ACLs, anchor peers and
// orderer endpoints. Cases run in order on one channel and build on each
// other; block 0 (the genesis) was committed by Create.
func TestConfigBlocks(t *testing.T) {
	e := newConfigEnv(t)
	org3Tx := func(t *testing.T, key string) []byte {
		d, _ := e.tx(t, txSpec{creator: e.org3User, simulate: put(key, "org3")})
		return d
	}
	seq := func() uint64 { return e.c.Bundle().Sequence() }
	// Forged config blocks, each against the genesis configuration (sequence
	// 0); the orderer (which is trusted for ordering, not for
	// configuration) signed them all. Each is INVALID_CONFIG_TRANSACTION (or,
	// for another channel, TARGET_CHAIN_NOT_FOUND) and changes nothing.
	forged := []struct {
		name string
		data func(t *testing.T) []byte
		want pb.TxValidationCode
	}{
		{"config not what its last update produces", func(t *testing.T) []byte {
			ce := e.propose(t, e.update(t, addOrg3(e), e.org1Admin, e.org2Admin))
			acl := e.propose(t, e.update(t, setACL("peer/Propose", "/Channel/Application/Readers"), e.org1Admin, e.org2Admin))
			ce.LastUpdate = acl.LastUpdate
			return e.configTx(t, e.c.ID(), ce)
		}, ICT},
		{"last update signed by one admin of two", func(t *testing.T) []byte {
			ce := e.propose(t, e.update(t, addOrg3(e), e.org1Admin, e.org2Admin))
			ce.LastUpdate = e.update(t, addOrg3(e), e.org1Admin)
			return e.configTx(t, e.c.ID(), ce)
		}, ICT},
		{"last update signed by Org3's admin", func(t *testing.T) []byte {
			ce := e.propose(t, e.update(t, addOrg3(e), e.org1Admin, e.org2Admin))
			ce.LastUpdate = e.update(t, addOrg3(e), e.org3Admin, e.org1Admin)
			return e.configTx(t, e.c.ID(), ce)
		}, ICT},
		{"sequence skipped", func(t *testing.T) []byte {
			ce := e.propose(t, e.update(t, addOrg3(e), e.org1Admin, e.org2Admin))
			ce.Config.Sequence++
			return e.configTx(t, e.c.ID(), ce)
		}, ICT},
		{"no last update", func(t *testing.T) []byte {
			ce := e.propose(t, e.update(t, addOrg3(e), e.org1Admin, e.org2Admin))
			ce.LastUpdate = nil
			return e.configTx(t, e.c.ID(), ce)
		}, ICT},
		{"genesis config replayed", func(t *testing.T) []byte {
			return e.configTx(t, e.c.ID(), &cb.ConfigEnvelope{Config: e.c.Bundle().Config()})
		}, ICT},
		{"another channel", func(t *testing.T) []byte {
			return e.configTx(t, "otherchannel", e.propose(t, e.update(t, addOrg3(e), e.org1Admin, e.org2Admin)))
		}, pb.TxValidationCode_TARGET_CHAIN_NOT_FOUND},
	}
	genesis := e.c.Bundle()
	top := t
	reopen := func(t *testing.T) {
		if err := e.c.Close(); err != nil {
			t.Fatal(err)
		}
		c, err := Open(e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		top.Cleanup(func() { c.Close() }) // later steps use it
		e.c = c
	}

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"Org3 is unknown before it is added", func(t *testing.T) {
			e.mustCommit(t, [][]byte{org3Tx(t, "org3-early")}, BCS)
		}},
		{"forged config blocks change nothing", func(t *testing.T) {
			for _, f := range forged {
				t.Run(f.name, func(t *testing.T) {
					e.mustCommit(t, [][]byte{f.data(t)}, f.want)
					if e.c.Bundle() != genesis {
						t.Fatalf("configuration replaced (sequence %d)", seq())
					}
				})
			}
			// Validated with the configuration kept, the next block's Org3
			// transaction is still from an unknown MSP.
			e.mustCommit(t, [][]byte{org3Tx(t, "org3-after-forgeries")}, BCS)
		}},
		{"reopened, the channel keeps the configuration before an invalid config block", func(t *testing.T) {
			e.mustCommit(t, [][]byte{forged[1].data(t)}, ICT) // the last block is an invalid config block
			reopen(t)
			if seq() != 0 || len(e.c.Bundle().Application().Orgs) != 2 {
				t.Fatalf("reopened at sequence %d with %d organisations, want the genesis configuration", seq(), len(e.c.Bundle().Application().Orgs))
			}
		}},
		{"Org3 added by Org1 and Org2 admins", func(t *testing.T) {
			cfgTx := e.configTx(t, e.c.ID(), e.propose(t, e.update(t, addOrg3(e), e.org1Admin, e.org2Admin)))
			// Prepared in the same pipelined run, right behind the config
			// block: the pipeline must finish the config block first.
			got := e.commitChain(t, [][]byte{cfgTx}, [][]byte{org3Tx(t, "org3-1")}, [][]byte{org3Tx(t, "org3-2")})
			want := [][]pb.TxValidationCode{{VALID}, {VALID}, {VALID}}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("codes = %v, want %v", got, want)
			}
			if seq() != 1 {
				t.Fatalf("sequence %d, want 1", seq())
			}
			if v, _ := e.state(t, basic, "org3-2"); string(v) != "org3" {
				t.Fatalf("org3-2 = %q, want the Org3 client's write", v)
			}
			i := slices.IndexFunc(e.c.Bundle().Application().Orgs, func(o channelconfig.AppOrg) bool { return o.MSPID == "Org3MSP" })
			if i < 0 {
				t.Fatal("Org3MSP is not an application organisation")
			}
			if anchors := e.c.Bundle().Application().Orgs[i].AnchorPeers; !slices.Equal(anchors, []string{"127.0.0.1:10051"}) {
				t.Fatalf("Org3 anchor peers = %v", anchors)
			}
			if !e.satisfies(t, "/Channel/Application/Writers", e.org3User) {
				t.Fatal("an Org3 client does not satisfy /Channel/Application/Writers")
			}
		}},
		{"the Org3 config block replayed", func(t *testing.T) {
			// Still the sequence-1 config; the channel is at sequence 1.
			stored, err := e.c.Ledger().Block(e.c.Ledger().Height() - 3)
			if err != nil {
				t.Fatal(err)
			}
			e.mustCommit(t, stored.Data.Data, ICT)
			if seq() != 1 {
				t.Fatalf("sequence %d, want 1", seq())
			}
		}},
		{"ACL and application Writers changed", func(t *testing.T) {
			const resource = "peer/Propose"
			if p := e.c.Bundle().ACLPolicy(resource, ""); p != "/Channel/Application/Writers" {
				t.Fatalf("ACL of %s before = %q", resource, p)
			}
			// Three organisations now: MAJORITY Admins is two of three.
			e.mustCommit(t, [][]byte{e.configTx(t, e.c.ID(), e.propose(t, e.update(t, func(tx *fabconfigtx.ConfigTx) error {
				if err := setACL(resource, "/Channel/Application/Admins")(tx); err != nil {
					return err
				}
				return tx.Application().SetPolicy(fabconfigtx.WritersPolicyKey, fabconfigtx.Policy{Type: fabconfigtx.SignaturePolicyType, Rule: "OR('Org1MSP.member')"})
			}, e.org1Admin, e.org3Admin)))}, VALID)
			if p := e.c.Bundle().ACLPolicy(resource, ""); p != "/Channel/Application/Admins" {
				t.Fatalf("ACL of %s after = %q, want /Channel/Application/Admins", resource, p)
			}
			if e.satisfies(t, "/Channel/Application/Writers", e.org3User) || !e.satisfies(t, "/Channel/Application/Writers", e.user1) {
				t.Fatal("/Channel/Application/Writers is not OR('Org1MSP.member')")
			}
		}},
		{"orderer endpoint moved", func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer lis.Close()
			port := lis.Addr().(*net.TCPAddr).Port
			before, roots := e.c.orderers()
			if !slices.Equal(before, []string{"127.0.0.1:7050"}) || len(roots) == 0 {
				t.Fatalf("orderers before = %v (%d TLS roots)", before, len(roots))
			}
			e.mustCommit(t, [][]byte{e.configTx(t, e.c.ID(), e.propose(t, e.update(t, func(tx *fabconfigtx.ConfigTx) error {
				org := tx.Orderer().Organization("OrdererMSP")
				if err := org.SetEndpoint(fabconfigtx.Address{Host: "127.0.0.1", Port: port}); err != nil {
					return err
				}
				return org.RemoveEndpoint(fabconfigtx.Address{Host: "127.0.0.1", Port: 7050})
			}, e.ordererAdmin)))}, VALID)
			after, afterRoots := e.c.orderers()
			if want := []string{lis.Addr().String()}; !slices.Equal(after, want) || len(afterRoots) != len(roots) {
				t.Fatalf("orderers after = %v (%d TLS roots), want %v", after, len(afterRoots), want)
			}
			// The channel's puller dials the new endpoint.
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.c.Run(ctx) }()
			accepted := make(chan error, 1)
			go func() {
				conn, err := lis.Accept()
				if err == nil {
					conn.Close()
				}
				accepted <- err
			}()
			select {
			case err := <-accepted:
				if err != nil {
					t.Errorf("accept: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("the puller did not dial the new orderer endpoint")
				lis.Close()
				<-accepted
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}},
		{"Org2 removed by Org1 and Org3 admins", func(t *testing.T) {
			before2, _ := e.tx(t, txSpec{creator: e.org2User, simulate: put("org2-client", "v")})
			e.mustCommit(t, [][]byte{before2}, VALID)
			cfgTx := e.configTx(t, e.c.ID(), e.propose(t, e.update(t, func(tx *fabconfigtx.ConfigTx) error {
				tx.Application().RemoveOrganization("Org2MSP")
				return nil
			}, e.org1Admin, e.org3Admin)))
			byOrg2Client, _ := e.tx(t, txSpec{creator: e.org2User, simulate: put("org2-client", "w")})
			byOrg2Peer, _ := e.tx(t, txSpec{endorsers: []envelope.Signer{e.peer2}, simulate: put("org2-peer", "w")})
			byOrg1, _ := e.tx(t, txSpec{simulate: put("org1", "w")})
			got := e.commitChain(t, [][]byte{cfgTx}, [][]byte{byOrg2Client, byOrg2Peer, byOrg1})
			want := [][]pb.TxValidationCode{{VALID}, {BCS, EPF, VALID}}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("codes = %v, want %v", got, want)
			}
		}},
		{"reopened, the channel recovers the last applied configuration", func(t *testing.T) {
			want := seq()
			e.mustCommit(t, [][]byte{e.configTx(t, e.c.ID(), &cb.ConfigEnvelope{Config: e.c.Bundle().Config()})}, ICT)
			reopen(t)
			if seq() != want {
				t.Fatalf("reopened at sequence %d, want %d", seq(), want)
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			break // later steps build on this one
		}
	}
}
