package endorser

import (
	"context"
	"strconv"
	"testing"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/peer/internal/chaincode"
	"github.com/cairn-ledger/cairn/peer/internal/ledger"
)

// configuredChannel is a channel with a real configuration (cryptogen's
// default network) and ledger.
type configuredChannel struct {
	fakeChannel
	bundle *channelconfig.Bundle
}

func (c configuredChannel) Bundle() *channelconfig.Bundle { return c.bundle }

// newConfiguredEndorser is an endorser, signing as the first peer of
// cryptogen's default network, of that network's channel (returned) on a
// fresh ledger, running chaincode with rt; user is a client of the same
// organisation. The ledger is closed when the test ends.
func newConfiguredEndorser(tb testing.TB, rt Runtime) (e *Endorser, channel string, user *crypto.SigningIdentity) {
	tb.Helper()
	dir := tb.TempDir()
	net := netconfig.Default()
	if err := cryptogen.Generate(net, dir); err != nil {
		tb.Fatal(err)
	}
	genesis, err := channelconfig.Genesis(net, dir)
	if err != nil {
		tb.Fatal(err)
	}
	bundle, err := channelconfig.FromBlock(genesis)
	if err != nil {
		tb.Fatal(err)
	}
	org := net.PeerOrgs[0]
	l := cryptogen.Layout{Root: dir}
	peerID, err := crypto.LoadSigningIdentity(org.MSPID, l.NodeMSPDir(true, org.Domain, org.Peers[0].FullName(org.Domain)))
	if err != nil {
		tb.Fatal(err)
	}
	if user, err = crypto.LoadSigningIdentity(org.MSPID, l.UserMSPDir(true, org.Domain, org.Users[0])); err != nil {
		tb.Fatal(err)
	}
	lg, err := ledger.Open(ledger.Config{Dir: tb.TempDir(), NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lg.Close() })
	channel = net.Channel.Name
	e = New(Config{
		Signer:   peerID,
		Channels: fakeChannels{channel: configuredChannel{fakeChannel: fakeChannel{lg}, bundle: bundle}},
		Runtime:  rt,
	})
	return e, channel, user
}

// putRuntime is a chaincode that writes its first argument's value under
// its second: one key, as `cairn bench endorse --chaincode shimcheck`'s Put,
// without a chaincode process.
type putRuntime struct{}

func (putRuntime) Execute(_ context.Context, inv chaincode.Invocation, sim chaincode.TxSimulator) (*chaincode.Result, error) {
	if err := sim.SetState(inv.Namespace, string(inv.Input.Args[1]), inv.Input.Args[2]); err != nil {
		return nil, err
	}
	return &chaincode.Result{Response: &pb.Response{Status: 200}}, nil
}

// BenchmarkProcessProposal is the endorser's own share of an endorsement:
// unpack, creator and signature check, peer/Propose ACL, duplicate check,
// simulation of one write (no chaincode process), read-write set and the
// signed response. Two ECDSA operations (verify ~70 µs, sign ~30 µs here)
// are most of it; allocs/op tracks the rest. Run it with
//
//	go test -run '^$' -bench ProcessProposal -benchmem ./peer/internal/endorser
func BenchmarkProcessProposal(b *testing.B) {
	e, channel, user := newConfiguredEndorser(b, putRuntime{})
	props := make([]*pb.SignedProposal, b.N)
	for i := range props {
		args := [][]byte{[]byte("Put"), []byte("key" + strconv.Itoa(i)), []byte(`{"Color":"blue","Size":5}`)}
		prop, _, err := envelope.NewProposal(channel, "shimcheck", args, nil, user.Serialize())
		if err != nil {
			b.Fatal(err)
		}
		if props[i], err = envelope.SignProposal(prop, user); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		resp, err := e.ProcessProposal(ctx, props[i])
		if err != nil || resp.GetResponse().GetStatus() != 200 || resp.GetEndorsement() == nil {
			b.Fatalf("proposal %d: %v %v", i, resp.GetResponse(), err)
		}
	}
}
