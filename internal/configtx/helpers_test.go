package configtx_test

import (
	"testing"

	fabconfigtx "github.com/hyperledger/fabric-config/configtx"
	"github.com/hyperledger/fabric-config/configtx/orderer"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ordererpb "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"github.com/hyperledger/fabric-protos-go-apiv2/orderer/etcdraft"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/configtx"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// fixture is a channel whose genesis has Org1MSP, Org2MSP and one consenter
// (orderer0), with crypto material for a third organisation and two more
// orderers that updates can add.
type fixture struct {
	genesis *channelconfig.Bundle
	// org3 is Org3MSP as fabric-config describes it, ready to add.
	org3 fabconfigtx.Organization
	// consenters are orderer0, orderer1, orderer2.
	consenters []orderer.Consenter

	ordererAdmin, org1Admin, org2Admin, org3Admin, org1User *crypto.SigningIdentity
}

// network is the standard consortium with orgs application organisations and
// orderers orderers, on fixed ports.
func network(t testing.TB, orgs, orderers int) *netconfig.Network {
	t.Helper()
	n, err := netconfig.Generate(orgs, 1, orderers)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.OrdererOrgs[0].Orderers {
		o := &n.OrdererOrgs[0].Orderers[i]
		o.Port, o.ClusterPort, o.AdminPort, o.OperationsPort = 7050+100*i, 7060+100*i, 7070+100*i, 7080+100*i
	}
	for i := range n.PeerOrgs {
		p := &n.PeerOrgs[i].Peers[0]
		p.Port, p.OperationsPort = 8051+1000*i, 8061+1000*i
	}
	return n
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	full := network(t, 3, 3)
	if err := cryptogen.Generate(full, dir); err != nil {
		t.Fatal(err)
	}
	fullBlock, err := channelconfig.Genesis(full, dir)
	if err != nil {
		t.Fatal(err)
	}
	fullTx := fabconfigtx.New(configOf(t, fullBlock))
	org3, err := fullTx.Application().Organization("Org3MSP").Configuration()
	if err != nil {
		t.Fatal(err)
	}
	ord, err := fullTx.Orderer().Configuration()
	if err != nil {
		t.Fatal(err)
	}

	gb, err := channelconfig.Genesis(network(t, 2, 1), dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := channelconfig.FromBlock(gb)
	if err != nil {
		t.Fatal(err)
	}
	l := cryptogen.Layout{Root: dir}
	admin := func(peerOrg bool, mspID, domain, user string) *crypto.SigningIdentity {
		id, err := crypto.LoadSigningIdentity(mspID, l.UserMSPDir(peerOrg, domain, user))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	return &fixture{
		genesis:      b,
		org3:         org3,
		consenters:   ord.EtcdRaft.Consenters,
		ordererAdmin: admin(false, "OrdererMSP", "example.com", cryptogen.AdminUser),
		org1Admin:    admin(true, "Org1MSP", "org1.example.com", cryptogen.AdminUser),
		org2Admin:    admin(true, "Org2MSP", "org2.example.com", cryptogen.AdminUser),
		org3Admin:    admin(true, "Org3MSP", "org3.example.com", cryptogen.AdminUser),
		org1User:     admin(true, "Org1MSP", "org1.example.com", "User1"),
	}
}

func configOf(t testing.TB, b *cb.Block) *cb.Config {
	t.Helper()
	ce, err := block.Config(b)
	if err != nil {
		t.Fatal(err)
	}
	return ce.Config
}

// mutation changes a configuration with fabric-config's setters.
type mutation func(tx *fabconfigtx.ConfigTx) error

// updateEnv builds the update envelope applying m to b's configuration.
func updateEnv(t testing.TB, b *channelconfig.Bundle, m mutation, signers ...configtx.Signer) *cb.Envelope {
	t.Helper()
	tx := fabconfigtx.New(b.Config())
	if err := m(&tx); err != nil {
		t.Fatal(err)
	}
	env, err := configtx.NewUpdateEnvelope(b.ChannelID(), b.Config(), tx.UpdatedConfig(), signers...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// apply proposes env on b and parses the result.
func apply(t testing.TB, b *channelconfig.Bundle, env *cb.Envelope) (*channelconfig.Bundle, error) {
	t.Helper()
	ce, err := configtx.ProposeUpdate(b, env)
	if err != nil {
		return nil, err
	}
	next, err := channelconfig.New(b.ChannelID(), ce.Config)
	if err != nil {
		t.Fatalf("proposed configuration does not parse: %v", err)
	}
	return next, nil
}

func signers(ids ...*crypto.SigningIdentity) []configtx.Signer {
	out := make([]configtx.Signer, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

func setMaxMessageCount(n uint32) mutation {
	return func(tx *fabconfigtx.ConfigTx) error { return tx.Orderer().BatchSize().SetMaxMessageCount(n) }
}

func addConsenters(cs ...orderer.Consenter) mutation {
	return func(tx *fabconfigtx.ConfigTx) error {
		for _, c := range cs {
			if err := tx.Orderer().AddConsenter(c); err != nil {
				return err
			}
		}
		return nil
	}
}

func removeConsenters(cs ...orderer.Consenter) mutation {
	return func(tx *fabconfigtx.ConfigTx) error {
		for _, c := range cs {
			if err := tx.Orderer().RemoveConsenter(c); err != nil {
				return err
			}
		}
		return nil
	}
}

// clearConsenters empties the Raft consenter set, which fabric-config's
// setters refuse to do, by editing the ConsensusType value directly.
func clearConsenters(tx *fabconfigtx.ConfigTx) error {
	v := tx.UpdatedConfig().ChannelGroup.Groups["Orderer"].Values["ConsensusType"]
	ct := &ordererpb.ConsensusType{}
	if err := proto.Unmarshal(v.Value, ct); err != nil {
		return err
	}
	md := &etcdraft.ConfigMetadata{}
	if err := proto.Unmarshal(ct.Metadata, md); err != nil {
		return err
	}
	md.Consenters = nil
	var err error
	if ct.Metadata, err = proto.Marshal(md); err != nil {
		return err
	}
	v.Value, err = proto.Marshal(ct)
	return err
}
