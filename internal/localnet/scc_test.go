package localnet_test

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// TestSystemChaincodes queries qscc and cscc the way Fabric tools do and
// checks the answers against each other and the chain.
func TestSystemChaincodes(t *testing.T) {
	n := startNetwork(t)
	gw, conn, err := n.Gateway(0, "user1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer gw.Close()
	network := gw.GetNetwork(n.Info.Channel)
	_, commit, err := network.GetContract("basic").SubmitAsync("CreateAsset", client.WithArguments("scc-1", "red", "1", "A", "1"))
	if err != nil {
		t.Fatal(errorText(err))
	}
	st, err := commit.Status()
	if err != nil || !st.Successful {
		t.Fatalf("commit: %v %v", st, err)
	}
	qscc := network.GetContract("qscc")
	ch := n.Info.Channel

	raw, err := qscc.EvaluateTransaction("GetBlockByTxID", ch, st.TransactionID)
	if err != nil {
		t.Fatal(errorText(err))
	}
	byTx := &cb.Block{}
	if err := proto.Unmarshal(raw, byTx); err != nil {
		t.Fatal(err)
	}
	if byTx.Header.Number != st.BlockNumber {
		t.Fatalf("GetBlockByTxID gave block %d, commit status says %d", byTx.Header.Number, st.BlockNumber)
	}
	raw, err = qscc.EvaluateTransaction("GetBlockByHash", ch, string(block.HeaderHash(byTx.Header)))
	if err != nil {
		t.Fatal(errorText(err))
	}
	byHash := &cb.Block{}
	if err := proto.Unmarshal(raw, byHash); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(byHash, byTx) {
		t.Fatal("GetBlockByHash and GetBlockByTxID disagree")
	}
	raw, err = qscc.EvaluateTransaction("GetBlockByNumber", ch, fmt.Sprint(st.BlockNumber))
	if err != nil {
		t.Fatal(errorText(err))
	}
	byNum := &cb.Block{}
	if err := proto.Unmarshal(raw, byNum); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(byNum, byTx) {
		t.Fatal("GetBlockByNumber and GetBlockByTxID disagree")
	}
	raw, err = qscc.EvaluateTransaction("GetChainInfo", ch)
	if err != nil {
		t.Fatal(errorText(err))
	}
	info := &cb.BlockchainInfo{}
	if err := proto.Unmarshal(raw, info); err != nil {
		t.Fatal(err)
	}
	if info.Height <= st.BlockNumber {
		t.Fatalf("chain height %d does not include block %d", info.Height, st.BlockNumber)
	}
	if _, err := qscc.EvaluateTransaction("GetBlockByNumber", ch, "99999"); err == nil {
		t.Fatal("GetBlockByNumber of a missing block succeeded")
	}

	// cscc GetConfigBlock (on the channel) returns the genesis config block.
	raw, err = network.GetContract("cscc").EvaluateTransaction("GetConfigBlock", ch)
	if err != nil {
		t.Fatal(errorText(err))
	}
	cfg := &cb.Block{}
	if err := proto.Unmarshal(raw, cfg); err != nil {
		t.Fatal(err)
	}
	if !block.IsConfig(cfg) || cfg.Header.Number != 0 {
		t.Fatalf("GetConfigBlock returned block %d (config: %v)", cfg.Header.Number, block.IsConfig(cfg))
	}

	// cscc GetChannels is channel-less, signed by the org admin, as `peer channel list`.
	admin := loadUser(t, n.Info.Organizations[0].MSPID, n.Info.Organizations[0].Users["admin"])
	prop, _, err := envelope.NewProposal("", "cscc", [][]byte{[]byte("GetChannels")}, nil, admin.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	sp, err := envelope.SignProposal(prop, admin)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := pb.NewEndorserClient(dialPeer(t, n)).ProcessProposal(ctxT(t), sp)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Response.GetStatus() != 200 {
		t.Fatalf("GetChannels: %d %s", resp.Response.GetStatus(), resp.Response.GetMessage())
	}
	chans := &pb.ChannelQueryResponse{}
	if err := proto.Unmarshal(resp.Response.Payload, chans); err != nil {
		t.Fatal(err)
	}
	if len(chans.Channels) != 1 || chans.Channels[0].ChannelId != ch {
		t.Fatalf("GetChannels = %v", chans.Channels)
	}
}

// TestEveryPeerHoldsTheSameLedger runs 2 organisations × 2 peers, submits
// through both organisations and checks that every peer ends with the same
// blocks, validation codes and state.
func TestEveryPeerHoldsTheSameLedger(t *testing.T) {
	net, err := netconfig.Generate(2, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	n, err := localnet.Up(ctx, localnet.Options{Dir: t.TempDir(), Binary: cairnBin, Network: net, Progress: &progress})
	if err != nil {
		t.Fatalf("network up: %v\n%s", err, progress.String())
	}
	t.Cleanup(func() { n.Stop() })
	if len(n.Info.Organizations) != 2 || len(n.Info.Organizations[1].Peers) != 2 {
		t.Fatalf("network.json: %+v", n.Info.Organizations)
	}
	for org := 0; org < 2; org++ {
		gw, conn, err := n.Gateway(org, "user1")
		if err != nil {
			t.Fatal(err)
		}
		contract := gw.GetNetwork(n.Info.Channel).GetContract("basic")
		for i := 0; i < 5; i++ {
			if _, err := contract.SubmitTransaction("CreateAsset", fmt.Sprintf("same-%d-%d", org, i), "blue", "1", "X", "1"); err != nil {
				t.Fatalf("org %d submit: %s", org+1, errorText(err))
			}
		}
		gw.Close()
		conn.Close()
	}

	type view struct {
		name   string
		blocks [][]byte // header hash ‖ filter per block
		assets string
	}
	var views []view
	deadline := time.Now().Add(30 * time.Second)
	for oi, org := range n.Info.Organizations {
		for pi, p := range org.Peers {
			gw, conn, err := localnet.ConnectGateway(n.Info, oi, pi, "user1")
			if err != nil {
				t.Fatal(err)
			}
			network := gw.GetNetwork(n.Info.Channel)
			qscc := network.GetContract("qscc")
			// Wait until this peer has every block the others report.
			var info cb.BlockchainInfo
			for {
				raw, err := qscc.EvaluateTransaction("GetChainInfo", n.Info.Channel)
				if err == nil && proto.Unmarshal(raw, &info) == nil && (len(views) == 0 || info.Height >= uint64(len(views[0].blocks))) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s did not catch up: %v", p.Name, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			v := view{name: p.Name}
			height := info.Height
			if len(views) > 0 {
				height = uint64(len(views[0].blocks))
			}
			for num := uint64(0); num < height; num++ {
				raw, err := qscc.EvaluateTransaction("GetBlockByNumber", n.Info.Channel, fmt.Sprint(num))
				if err != nil {
					t.Fatal(errorText(err))
				}
				b := &cb.Block{}
				if err := proto.Unmarshal(raw, b); err != nil {
					t.Fatal(err)
				}
				v.blocks = append(v.blocks, append(block.HeaderHash(b.Header), block.TxFilter(b)...))
			}
			raw, err := network.GetContract("basic").EvaluateTransaction("GetAllAssets")
			if err != nil {
				t.Fatalf("%s GetAllAssets: %s", p.Name, errorText(err))
			}
			v.assets = string(raw)
			views = append(views, v)
			gw.Close()
			conn.Close()
		}
	}
	sort.Slice(views, func(i, j int) bool { return views[i].name < views[j].name })
	for _, v := range views[1:] {
		if len(v.blocks) != len(views[0].blocks) {
			t.Fatalf("%s has %d blocks, %s %d", v.name, len(v.blocks), views[0].name, len(views[0].blocks))
		}
		for i := range v.blocks {
			if !bytes.Equal(v.blocks[i], views[0].blocks[i]) {
				t.Fatalf("block %d differs between %s and %s (hash or validation codes)", i, v.name, views[0].name)
			}
		}
		if v.assets != views[0].assets {
			t.Fatalf("state differs between %s and %s", v.name, views[0].name)
		}
	}
	t.Logf("%d peers hold %d identical blocks", len(views), len(views[0].blocks))
}
