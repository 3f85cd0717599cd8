package localnet_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/localnet"
)

// loadSeconds is how long TestConsortiumUnderLoad submits: the 60 s,
// or CAIRN_LOAD_SECONDS for a quicker local run.
func loadSeconds(t *testing.T) time.Duration {
	if v := os.Getenv("CAIRN_LOAD_SECONDS"); v != "" {
		s, err := strconv.Atoi(v)
		if err != nil || s <= 0 {
			t.Fatalf("CAIRN_LOAD_SECONDS=%q is not a positive number of seconds", v)
		}
		return time.Duration(s) * time.Second
	}
	return 60 * time.Second
}

// outcome is what one client learnt about one transaction it submitted.
type outcome struct {
	code  pb.TxValidationCode
	block uint64
}

// TestConsortiumUnderLoad: on the default consortium, 200 clients (the
// official Fabric Gateway client, spread over every peer's gateway) submit
// asynchronously for 60 s, mostly new assets and some updates of a few hot
// assets. Every transaction a gateway accepted is committed exactly once,
// VALID or with an explicit conflict code that the block records too, and
// every peer ends with an identical ledger.
func TestConsortiumUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of load on a local network")
	}
	const clients = 200
	duration := loadSeconds(t)
	ctx, cancel := context.WithTimeout(context.Background(), duration+4*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	n, err := localnet.Up(ctx, localnet.Options{Dir: t.TempDir(), Binary: cairnBin, Progress: &progress, NoSync: true})
	if err != nil {
		t.Fatalf("network up: %v\n%s", err, progress.String())
	}
	t.Cleanup(func() { _ = n.Stop() })

	// One connection per peer, shared by the clients of that peer.
	type peerConn struct {
		gw   *client.Gateway
		conn *grpc.ClientConn
	}
	var peers []peerConn
	for oi, org := range n.Info.Organizations {
		for pi := range org.Peers {
			gw, conn, err := localnet.ConnectGateway(n.Info, oi, pi, "user1")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			defer gw.Close()
			peers = append(peers, peerConn{gw, conn})
		}
	}
	hot := []string{"hot-0", "hot-1", "hot-2", "hot-3"}
	for _, id := range hot {
		submitVALID(ctx, t, peers[0].gw.GetNetwork(n.Info.Channel).GetContract("basic"), "CreateAsset", id, "red", "1", "Hot", "1")
	}

	var (
		mu       sync.Mutex
		outcomes = map[string]outcome{}
		refused  = map[string]int{} // endorsement or submit errors, by function and message
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(duration)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			contract := peers[c%len(peers)].gw.GetNetwork(n.Info.Channel).GetContract("basic")
			rnd := rand.New(rand.NewPCG(uint64(c), 42))
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				fn, args := "CreateAsset", []string{fmt.Sprintf("load-%d-%d", c, i), "blue", "3", "Load", "30"}
				if rnd.IntN(20) == 0 {
					fn, args = "UpdateAsset", []string{hot[rnd.IntN(len(hot))], "green", "4", "Hot", strconv.Itoa(i)}
				}
				_, commit, err := contract.SubmitAsyncWithContext(ctx, fn, client.WithArguments(args...))
				if err != nil {
					mu.Lock()
					refused[fn+": "+errorText(err)]++
					mu.Unlock()
					continue
				}
				st, err := commit.StatusWithContext(ctx)
				if err != nil {
					t.Errorf("commit status of %s: %v", commit.TransactionID(), err)
					return
				}
				mu.Lock()
				if _, dup := outcomes[st.TransactionID]; dup {
					t.Errorf("transaction ID %s reported twice", st.TransactionID)
				}
				outcomes[st.TransactionID] = outcome{code: st.Code, block: st.BlockNumber}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	codes := map[pb.TxValidationCode]int{}
	for _, o := range outcomes {
		codes[o.code]++
	}
	t.Logf("%d clients for %s: %d committed (%.0f tx/s), codes %v; %d refused before ordering %v",
		clients, duration, len(outcomes), float64(len(outcomes))/duration.Seconds(), codes, len(refused), refused)
	if codes[pb.TxValidationCode_VALID] == 0 {
		t.Fatal("nothing committed VALID")
	}
	for code := range codes {
		switch code {
		case pb.TxValidationCode_VALID, pb.TxValidationCode_MVCC_READ_CONFLICT, pb.TxValidationCode_PHANTOM_READ_CONFLICT:
		default:
			t.Errorf("%d transactions committed %s: neither VALID nor a conflict", codes[code], code)
		}
	}
	// A new asset is never refused. An update of a hot asset may be: the two
	// organisations' peers, a block apart, read different versions and the
	// gateway refuses the mismatching endorsements, as Fabric's does — the
	// conflict surfaces before ordering instead of at validation.
	for what, k := range refused {
		if !strings.HasPrefix(what, "UpdateAsset: ") || !strings.Contains(what, "ProposalResponsePayloads do not match") {
			t.Errorf("%d submits refused before ordering: %s", k, what)
		}
	}

	// Every peer converges on the same chain, which holds each transaction
	// exactly once with the code its client was told.
	height := waitSameChain(ctx, t, n)
	seen := map[string]int{}
	raw := readChain(ctx, t, peers[0].gw.GetNetwork(n.Info.Channel), height)
	for _, b := range raw {
		flags := b.GetMetadata().GetMetadata()[cb.BlockMetadataIndex_TRANSACTIONS_FILTER]
		for i, data := range b.GetData().GetData() {
			env := &cb.Envelope{}
			if err := proto.Unmarshal(data, env); err != nil {
				t.Fatal(err)
			}
			p, err := envelope.Parse(env)
			if err != nil {
				t.Fatal(err)
			}
			txID := p.ChannelHeader.TxId
			seen[txID]++
			o, ours := outcomes[txID]
			if !ours {
				continue
			}
			if got := pb.TxValidationCode(flags[i]); got != o.code || b.GetHeader().GetNumber() != o.block {
				t.Errorf("%s: block %d records %s, its client was told %s in block %d", txID, b.GetHeader().GetNumber(), got, o.code, o.block)
			}
		}
	}
	for txID := range outcomes {
		if seen[txID] != 1 {
			t.Errorf("transaction %s is in the chain %d times", txID, seen[txID])
		}
	}
}

// waitSameChain waits until every peer reports the same height and tip hash
// (qscc GetChainInfo answers about the peer asked) and returns the height.
func waitSameChain(ctx context.Context, t *testing.T, n *localnet.Network) uint64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var infos []*cb.BlockchainInfo
		for oi, org := range n.Info.Organizations {
			for pi := range org.Peers {
				gw, conn, err := localnet.ConnectGateway(n.Info, oi, pi, "user1")
				if err != nil {
					t.Fatal(err)
				}
				raw, err := gw.GetNetwork(n.Info.Channel).GetContract("qscc").EvaluateWithContext(ctx, "GetChainInfo", client.WithArguments(n.Info.Channel))
				gw.Close()
				conn.Close()
				ci := &cb.BlockchainInfo{}
				if err != nil || proto.Unmarshal(raw, ci) != nil {
					t.Fatalf("GetChainInfo of %s: %v", org.Peers[pi].Name, err)
				}
				infos = append(infos, ci)
			}
		}
		same := true
		for _, ci := range infos[1:] {
			same = same && ci.Height == infos[0].Height && bytes.Equal(ci.CurrentBlockHash, infos[0].CurrentBlockHash)
		}
		if same {
			return infos[0].Height
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers did not converge on one chain: %v", infos)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readChain reads blocks 0..height-1 through the gateway's block events.
func readChain(ctx context.Context, t *testing.T, network *client.Network, height uint64) []*cb.Block {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	events, err := network.BlockEvents(ctx, client.WithStartBlock(0))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []*cb.Block
	for uint64(len(blocks)) < height {
		b, ok := <-events
		if !ok {
			t.Fatalf("block events ended at %d of %d blocks", len(blocks), height)
		}
		if b.GetHeader().GetNumber() != uint64(len(blocks)) {
			t.Fatalf("block event %d, want %d", b.GetHeader().GetNumber(), len(blocks))
		}
		blocks = append(blocks, b)
	}
	return blocks
}
