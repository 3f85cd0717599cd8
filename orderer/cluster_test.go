package orderer

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/freeport"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/protos/clusterpb"
	"github.com/cairn-ledger/cairn/protos/leadershippb"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	tickInterval = 50 * time.Millisecond
	electionTick = 10
)

// freePorts finds ports nobody listens on, so the genesis block can name the
// consenters' addresses before the nodes start.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	taken := map[int]bool{}
	ports := make([]int, n)
	for i := range ports {
		p, err := freeport.Pick("127.0.0.1", taken)
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	return ports
}

type clusterFixture struct {
	*fixture
	cfgs  []Config
	nodes []*running // nil while a node is stopped
}

// newClusterFixture makes crypto material, a genesis block and configs for
// size orderers. With separatePort, the cluster service has a port of its own.
func newClusterFixture(t *testing.T, size int, separatePort bool) *clusterFixture {
	t.Helper()
	return newClusterFixtureWith(t, size, separatePort, clusterOptions{})
}

// clusterOptions adjust a cluster fixture.
type clusterOptions struct {
	// channel changes the network description before the genesis block is made.
	channel func(*netconfig.Network)
	// followers is how many of the size orderers (the last ones) get crypto
	// material and a config but are left out of the genesis block's consenters
	// and endpoints.
	followers int
}

func newClusterFixtureWith(t *testing.T, size int, separatePort bool, opts clusterOptions) *clusterFixture {
	t.Helper()
	root := t.TempDir()
	net := netconfig.Default()
	ports := freePorts(t, 2*size)
	net.OrdererOrgs[0].Orderers = nil
	for i := range size {
		nd := netconfig.Node{Name: fmt.Sprintf("orderer%d", i), Host: "127.0.0.1", Port: ports[i]}
		if separatePort {
			nd.ClusterPort = ports[size+i]
		}
		net.OrdererOrgs[0].Orderers = append(net.OrdererOrgs[0].Orderers, nd)
	}
	net.Channel.BatchSize.MaxMessageCount = 10
	net.Channel.BatchTimeout = netconfig.Duration(100 * time.Millisecond)
	net.Channel.Raft.TickInterval = netconfig.Duration(tickInterval)
	net.Channel.Raft.ElectionTick = electionTick
	net.Channel.Raft.HeartbeatTick = 1
	if opts.channel != nil {
		opts.channel(net)
	}
	if err := cryptogen.Generate(net, root); err != nil {
		t.Fatal(err)
	}
	all := net.OrdererOrgs[0].Orderers
	net.OrdererOrgs[0].Orderers = all[:size-opts.followers]
	g, err := channelconfig.Genesis(net, root)
	net.OrdererOrgs[0].Orderers = all
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(g)
	l := cryptogen.Layout{Root: root}
	user, err := crypto.LoadSigningIdentity("Org1MSP", l.UserMSPDir(true, orgDomain, "User1"))
	if err != nil {
		t.Fatal(err)
	}
	cf := &clusterFixture{fixture: &fixture{layout: l, genesis: raw, user: user}, nodes: make([]*running, size)}
	for _, nd := range net.OrdererOrgs[0].Orderers {
		name := nd.FullName(ordDomain)
		clusterAddr := ""
		if nd.ClusterPort != 0 {
			clusterAddr = fmt.Sprintf("127.0.0.1:%d", nd.ClusterPort)
		}
		cf.cfgs = append(cf.cfgs, Config{
			ListenAddress:           nd.Address(),
			ClusterListenAddress:    clusterAddr,
			AdminListenAddress:      "127.0.0.1:0",
			OperationsListenAddress: "127.0.0.1:0",
			DataDir:                 t.TempDir(),
			TLS: TLSConfig{
				CertFile: l.NodeTLSCertPath(false, ordDomain, name),
				KeyFile:  l.NodeTLSKeyPath(false, ordDomain, name),
				RootCAs:  []string{l.TLSCACertPath(false, ordDomain)},
			},
			Admin:   AdminConfig{ClientRootCAs: []string{l.TLSCACertPath(false, ordDomain)}},
			MSPID:   "OrdererMSP",
			MSPDir:  l.NodeMSPDir(false, ordDomain, name),
			NoSync:  true,
			Cluster: ClusterConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, SubmitTimeout: 2 * time.Second},
		})
	}
	return cf
}

// leader waits until every running node names the same leader, and returns
// its index.
func (cf *clusterFixture) leader(t *testing.T, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		lead := uint64(0)
		agreed := true
		for _, n := range cf.nodes {
			if n == nil {
				continue
			}
			st := n.o.reg.Statuses()[channel]
			if st.Leader == 0 || (lead != 0 && st.Leader != lead) {
				agreed = false
				break
			}
			lead = st.Leader
		}
		if agreed && lead != 0 {
			// Raft IDs are 1..n in consenter order, as the nodes are listed.
			if idx := int(lead) - 1; cf.nodes[idx] != nil {
				return idx
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agreed leader within %v", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// broadcast sends envelopes with the given values, round robin over the
// running nodes, retrying while the service is unavailable.
func (cf *clusterFixture) broadcast(t *testing.T, values []string) {
	t.Helper()
	var clients []ab.AtomicBroadcastClient
	for _, n := range cf.nodes {
		if n != nil {
			clients = append(clients, cf.dial(t, n.o.Addrs().Broadcast))
		}
	}
	for i, v := range values {
		deadline := time.Now().Add(10 * time.Second)
		for {
			res := doBroadcast(t, clients[i%len(clients)], cf.tx(t, channel, []byte(v)))[0]
			if res.Status == cb.Status_SUCCESS {
				break
			}
			if res.Status != cb.Status_SERVICE_UNAVAILABLE || time.Now().After(deadline) {
				t.Fatalf("broadcast %s: %v %s", v, res.Status, res.Info)
			}
			t.Logf("broadcast %s: %v %s; retrying", v, res.Status, res.Info)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// values reads the transaction values of blocks 1.. in a node's store.
func values(t *testing.T, blocks []*cb.Block) []string {
	t.Helper()
	var out []string
	for _, b := range blocks[1:] {
		if block.IsConfig(b) {
			continue
		}
		for _, d := range b.Data.Data {
			env, p, cv := &cb.Envelope{}, &cb.Payload{}, &cb.ConfigValue{}
			if proto.Unmarshal(d, env) != nil || proto.Unmarshal(env.Payload, p) != nil || proto.Unmarshal(p.Data, cv) != nil {
				t.Fatalf("block %d holds an undecodable envelope", b.Header.Number)
			}
			out = append(out, string(cv.Value))
		}
	}
	return out
}

// converge waits until every running node holds all want values, then
// delivers blocks 0..tip from each node and checks they are byte-identical
// and hold every value exactly once.
func (cf *clusterFixture) converge(t *testing.T, want []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var height uint64
	for {
		var hs []uint64
		for _, n := range cf.nodes {
			if n == nil {
				continue
			}
			ch, ok := n.o.reg.Channel(channel)
			if !ok {
				t.Fatal("channel missing on a node")
			}
			hs = append(hs, ch.Height())
		}
		same := true
		for _, h := range hs {
			same = same && h == hs[0]
		}
		if same {
			first := cf.nodes[cf.anyRunning()]
			ch, _ := first.o.reg.Channel(channel)
			var blocks []*cb.Block
			for i := range hs[0] {
				b, err := ch.Block(i)
				if err != nil {
					t.Fatal(err)
				}
				blocks = append(blocks, b)
			}
			if len(values(t, blocks)) >= len(want) {
				height = hs[0]
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes did not converge on %d envelopes: heights %v", len(want), hs)
		}
		time.Sleep(20 * time.Millisecond)
	}

	var ref [][]byte
	for i, n := range cf.nodes {
		if n == nil {
			continue
		}
		blocks, st := doDeliver(t, cf.dial(t, n.o.Addrs().Broadcast), cf.seek(t, channel, 0, height-1, ab.SeekInfo_BLOCK_UNTIL_READY))
		if st != cb.Status_SUCCESS || uint64(len(blocks)) != height {
			t.Fatalf("deliver from node %d: %v, %d blocks, want %d", i, st, len(blocks), height)
		}
		var raw [][]byte
		for _, b := range blocks {
			raw = append(raw, mustMarshal(b))
		}
		if !bytes.Equal(raw[0], cf.genesis) {
			t.Fatalf("node %d: block 0 is not the genesis block", i)
		}
		if ref == nil {
			ref = raw
			counts := map[string]int{}
			for _, v := range values(t, blocks) {
				counts[v]++
			}
			for _, v := range want {
				if counts[v] != 1 {
					t.Errorf("envelope %s ordered %d times", v, counts[v])
				}
			}
			if len(counts) != len(want) {
				t.Errorf("%d distinct envelopes ordered, want %d", len(counts), len(want))
			}
			continue
		}
		for j := range raw {
			if !bytes.Equal(raw[j], ref[j]) {
				t.Fatalf("node %d: block %d differs", i, j)
			}
		}
	}
}

func (cf *clusterFixture) anyRunning() int {
	for i, n := range cf.nodes {
		if n != nil {
			return i
		}
	}
	return -1
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several orderers")
	}
	t.Run("3 nodes", func(t *testing.T) { testCluster(t, 3, false) })
	t.Run("5 nodes, cluster port apart", func(t *testing.T) { testCluster(t, 5, true) })
}

// testCluster runs a raft cluster of real orderers: elect, order envelopes
// sent to every node, lose the leader, re-elect, restart it, catch up; every
// node must hold byte-identical blocks with each envelope exactly once.
func testCluster(t *testing.T, size int, separatePort bool) {
	cf := newClusterFixture(t, size, separatePort)
	for i, cfg := range cf.cfgs {
		cf.nodes[i] = start(t, cfg)
	}
	defer func() {
		for _, n := range cf.nodes {
			if n != nil {
				n.stop(t)
			}
		}
	}()
	admin := cf.adminClient(t, true)
	for i, n := range cf.nodes {
		if resp, body := join(t, admin, n.o.Addrs().Admin, cf.genesis); resp.StatusCode != http.StatusCreated {
			t.Fatalf("join node %d: %d %s", i, resp.StatusCode, body)
		}
	}
	electionTimeout := electionTick * tickInterval
	lead := cf.leader(t, 10*time.Second)
	t.Logf("leader: node %d", lead)
	cf.checkLeadership(t, lead)
	cf.refusesStranger(t, cf.nodes[lead].o.Addrs().Cluster)

	var want []string
	batch := func(prefix string, n int) []string {
		var vs []string
		for i := range n {
			vs = append(vs, fmt.Sprintf("%s-%d", prefix, i))
		}
		want = append(want, vs...)
		return vs
	}
	cf.broadcast(t, batch("first", 30))
	cf.converge(t, want)

	// Stop the leader: the others elect a new one and keep ordering.
	cf.nodes[lead].stop(t)
	cf.nodes[lead] = nil
	stopped := time.Now()
	newLead := cf.leader(t, 3*electionTimeout)
	t.Logf("new leader: node %d after %v", newLead, time.Since(stopped))
	if newLead == lead {
		t.Fatal("stopped node is still the leader")
	}
	cf.checkLeadership(t, newLead)
	cf.broadcast(t, batch("second", 20))
	cf.converge(t, want)

	// Restart the old leader from its data: it catches up.
	cf.nodes[lead] = start(t, cf.cfgs[lead])
	cf.broadcast(t, batch("third", 10))
	cf.converge(t, want)
}

// checkLeadership asks every running node's Leadership service who leads:
// only node lead may say it does, every node reports a term, and a channel
// the node has not joined is NotFound.
func (cf *clusterFixture) checkLeadership(t *testing.T, lead int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, n := range cf.nodes {
		if n == nil {
			continue
		}
		c := leadershippb.NewLeadershipClient(cf.dialConn(t, n.o.Addrs().Broadcast))
		resp, err := c.Leader(ctx, &leadershippb.LeaderRequest{ChannelId: channel})
		if err != nil {
			t.Fatalf("node %d Leader: %v", i, err)
		}
		if resp.GetIsLeader() != (i == lead) || resp.GetTerm() == 0 {
			t.Fatalf("node %d says is_leader=%v term=%d; the leader is node %d", i, resp.GetIsLeader(), resp.GetTerm(), lead)
		}
		if _, err := c.Leader(ctx, &leadershippb.LeaderRequest{ChannelId: "nosuchchannel"}); status.Code(err) != codes.NotFound {
			t.Fatalf("node %d Leader of an unknown channel: %v, want NotFound", i, err)
		}
	}
}

// refusesStranger opens a cluster stream with a certificate of the right CA
// that is no consenter's (the orderer org's admin): it is refused.
func (cf *clusterFixture) refusesStranger(t *testing.T, addr string) {
	t.Helper()
	l := cf.layout
	tc, err := comm.ClientTLS([]string{l.TLSCACertPath(false, ordDomain)}, l.UserTLSCertPath(false, ordDomain, "Admin"), l.UserTLSKeyPath(false, ordDomain, "Admin"), "")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := clusterpb.NewClusterClient(cc).Step(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Send(&clusterpb.StepRequest{Payload: &clusterpb.StepRequest_ConsensusRequest{ConsensusRequest: &clusterpb.ConsensusRequest{Channel: channel}}})
	if _, err := s.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("cluster stream with a non-consenter certificate: %v", err)
	}
}
