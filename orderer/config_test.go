package orderer

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/configtx"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/orderer/internal/blocksign"
	"github.com/cairn-ledger/cairn/orderer/internal/chain"
	"github.com/cairn-ledger/cairn/orderer/internal/participation"
	"github.com/cairn-ledger/cairn/orderer/internal/raftstore"
	fabconfigtx "github.com/hyperledger/fabric-config/configtx"
	"github.com/hyperledger/fabric-config/configtx/orderer"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"github.com/hyperledger/fabric-protos-go-apiv2/orderer/etcdraft"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func loadIdentity(t *testing.T, l cryptogen.Layout, peerOrg bool, mspID, domain, user string) *crypto.SigningIdentity {
	t.Helper()
	id, err := crypto.LoadSigningIdentity(mspID, l.UserMSPDir(peerOrg, domain, user))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// lastConfig reads the configuration in force on a node: its last config block.
func lastConfig(t *testing.T, n *running) (*cb.Config, uint64) {
	t.Helper()
	ch, ok := n.o.reg.Channel(channel)
	if !ok {
		t.Fatal("channel missing")
	}
	last, err := ch.Block(ch.Height() - 1)
	if err != nil {
		t.Fatal(err)
	}
	num := last.Header.Number
	if !block.IsConfig(last) {
		if num, err = block.LastConfigIndex(last); err != nil {
			t.Fatal(err)
		}
	}
	cfgBlock, err := ch.Block(num)
	if err != nil {
		t.Fatal(err)
	}
	ce, err := block.Config(cfgBlock)
	if err != nil {
		t.Fatal(err)
	}
	return ce.Config, num
}

// sendUntilAccepted broadcasts env to c until it is accepted, retrying while
// the service is unavailable; any other status is returned.
func sendUntilAccepted(t *testing.T, c ab.AtomicBroadcastClient, env *cb.Envelope) *ab.BroadcastResponse {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := doBroadcast(t, c, env)[0]
		if res.Status != cb.Status_SERVICE_UNAVAILABLE || time.Now().After(deadline) {
			return res
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// configBlocks returns the numbers of the config blocks a node holds after
// the genesis block.
func configBlocks(t *testing.T, n *running) []uint64 {
	t.Helper()
	ch, _ := n.o.reg.Channel(channel)
	var out []uint64
	for i := uint64(1); i < ch.Height(); i++ {
		b, err := ch.Block(i)
		if err != nil {
			t.Fatal(err)
		}
		if block.IsConfig(b) {
			out = append(out, i)
		}
	}
	return out
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// raftIDs reads the consenter IDs a block's raft metadata carries.
// checkRaftIndexes fails the test unless every block in the raft log at dir
// carries the index of its entry as its RaftIndex.
func checkRaftIndexes(t *testing.T, dir string) {
	t.Helper()
	rs, err := raftstore.Open(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	first, _ := rs.FirstIndex()
	last, _ := rs.LastIndex()
	ents, err := rs.Entries(first, last+1, math.MaxUint64)
	if err != nil {
		t.Fatalf("raft entries %d..%d: %v", first, last, err)
	}
	blocks := 0
	for _, e := range ents {
		if e.GetType() != raftpb.EntryNormal || len(e.Data) == 0 {
			continue
		}
		b, err := block.Unmarshal(e.Data)
		if err != nil {
			t.Fatalf("entry %d: %v", e.GetIndex(), err)
		}
		blocks++
		if got := raftIDs(t, b).RaftIndex; got != e.GetIndex() {
			t.Errorf("%s: block %d carries RaftIndex %d, its entry is %d", dir, b.Header.Number, got, e.GetIndex())
		}
	}
	if blocks == 0 {
		t.Errorf("%s: no block in the raft log (entries %d..%d)", dir, first, last)
	}
	t.Logf("%s: %d blocks checked", dir, blocks)
}

func raftIDs(t *testing.T, b *cb.Block) *etcdraft.BlockMetadata {
	t.Helper()
	obm, _, err := blocksign.OrdererMetadata(b)
	if err != nil || obm == nil {
		t.Fatalf("block %d orderer metadata: %v", b.Header.Number, err)
	}
	md := &etcdraft.BlockMetadata{}
	if err := proto.Unmarshal(obm.ConsenterMetadata, md); err != nil {
		t.Fatal(err)
	}
	return md
}

// TestConfigUpdates changes the batch size and adds an application
// organisation through Broadcast on a 3-node channel, each update sent to a
// follower (forwarded to the leader, which re-validates it).
func TestConfigUpdates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several orderers")
	}
	cf := newClusterFixture(t, 3, false)
	for i, cfg := range cf.cfgs {
		cf.nodes[i] = start(t, cfg)
	}
	defer cf.stopAll(t)
	cf.joinAll(t)
	lead := cf.leader(t, 10*time.Second)
	follower := cf.nodes[(lead+1)%3]
	client := cf.dial(t, follower.o.Addrs().Broadcast)
	l := cf.layout
	ordererAdmin := loadIdentity(t, l, false, "OrdererMSP", ordDomain, cryptogen.AdminUser)
	org1Admin := loadIdentity(t, l, true, "Org1MSP", orgDomain, cryptogen.AdminUser)

	want := seq("before", 12)
	cf.broadcast(t, want)
	cf.converge(t, want)

	// (a) MaxMessageCount 10 -> 3: the orderer organisations' admins must sign.
	current, _ := lastConfig(t, follower)
	tx := fabconfigtx.New(current)
	if err := tx.Orderer().BatchSize().SetMaxMessageCount(3); err != nil {
		t.Fatal(err)
	}
	forbidden, err := configtx.NewUpdateEnvelope(channel, current, tx.UpdatedConfig(), org1Admin)
	if err != nil {
		t.Fatal(err)
	}
	res := sendUntilAccepted(t, client, forbidden)
	if res.Status != cb.Status_FORBIDDEN || !strings.Contains(res.Info, "/Channel/Orderer/Admins") {
		t.Fatalf("batch size update signed by an application admin: %v %q, want FORBIDDEN naming /Channel/Orderer/Admins", res.Status, res.Info)
	}
	t.Logf("application admin refused: %s", res.Info)
	update, err := configtx.NewUpdateEnvelope(channel, current, tx.UpdatedConfig(), ordererAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if res := sendUntilAccepted(t, client, update); res.Status != cb.Status_SUCCESS {
		t.Fatalf("batch size update: %v %q", res.Status, res.Info)
	}
	waitUntil(t, 10*time.Second, "the config block on every node", func() bool {
		for _, n := range cf.nodes {
			if len(configBlocks(t, n)) != 1 {
				return false
			}
		}
		return true
	})
	// The same update again is stale: its read set names version 0.
	if res := sendUntilAccepted(t, client, update); res.Status != cb.Status_BAD_REQUEST || !strings.Contains(res.Info, "version") {
		t.Errorf("stale update: %v %q, want BAD_REQUEST about versions", res.Status, res.Info)
	}

	after := seq("after", 20)
	want = append(want, after...)
	cf.broadcast(t, after)
	cf.converge(t, want)
	cfgNum := configBlocks(t, follower)[0]
	ch, _ := follower.o.reg.Channel(channel)
	for i := cfgNum; i < ch.Height(); i++ {
		b, err := ch.Block(i)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := block.LastConfigIndex(b); err != nil || n != cfgNum {
			t.Errorf("block %d: last config %d (%v), want %d", i, n, err, cfgNum)
		}
		if i == cfgNum {
			if len(b.Data.Data) != 1 {
				t.Errorf("config block %d holds %d envelopes", i, len(b.Data.Data))
			}
			continue
		}
		if len(b.Data.Data) > 3 {
			t.Errorf("block %d after the batch size change holds %d envelopes, want at most 3", i, len(b.Data.Data))
		}
	}
	if got := ch.AbsoluteMaxBytes(); got == 0 {
		t.Error("no configuration in force")
	}

	// (b) Add Org3MSP: crypto material from cryptogen, the update signed by
	// the admins /Channel/Application/Admins needs (MAJORITY: Org1's).
	org3 := org3Organization(t)
	current, _ = lastConfig(t, follower)
	tx = fabconfigtx.New(current)
	if err := tx.Application().SetOrganization(org3); err != nil {
		t.Fatal(err)
	}
	addOrg, err := configtx.NewUpdateEnvelope(channel, current, tx.UpdatedConfig(), org1Admin)
	if err != nil {
		t.Fatal(err)
	}
	if res := sendUntilAccepted(t, cf.dial(t, cf.nodes[lead].o.Addrs().Broadcast), addOrg); res.Status != cb.Status_SUCCESS {
		t.Fatalf("add org: %v %q", res.Status, res.Info)
	}
	waitUntil(t, 10*time.Second, "Org3MSP in force on every node", func() bool {
		for _, n := range cf.nodes {
			cfg, _ := lastConfig(t, n)
			if cfg.ChannelGroup.Groups["Application"].Groups["Org3MSP"] == nil {
				return false
			}
		}
		return true
	})
	last := seq("last", 4)
	want = append(want, last...)
	cf.broadcast(t, last)
	cf.converge(t, want)
	if got := configBlocks(t, follower); len(got) != 2 {
		t.Errorf("config blocks %v, want 2", got)
	}

	// (c) Envelopes checked at an older config sequence (here 0: before both
	// updates) are checked again by the leader, also when a follower
	// forwards them: a good one is ordered, one whose signature fails is not.
	lead = cf.leader(t, 10*time.Second)
	leaderCh, _ := cf.nodes[lead].o.reg.Channel(channel)
	followerCh, _ := cf.nodes[(lead+1)%3].o.reg.Channel(channel)
	if got := leaderCh.ConfigSequence(); got != 2 {
		t.Fatalf("config sequence %d, want 2", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	good, err := proto.Marshal(cf.tx(t, channel, []byte("stale-good")))
	if err != nil {
		t.Fatal(err)
	}
	if err := followerCh.OrderBatch(ctx, [][]byte{good}, 0)[0]; err != nil {
		t.Fatalf("envelope validated at sequence 0 and still valid: %v", err)
	}
	bad := cf.tx(t, channel, []byte("stale-bad"))
	bad.Signature[len(bad.Signature)-2] ^= 0xff
	badRaw, err := proto.Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaderCh.OrderBatch(ctx, [][]byte{badRaw}, 0)[0]; !errors.Is(err, chain.ErrBadMessage) {
		t.Fatalf("leader ordered an envelope that fails the configuration in force: %v", err)
	}
	if err := followerCh.OrderBatch(ctx, [][]byte{badRaw}, 0)[0]; err == nil || !strings.Contains(err.Error(), "bad normal message") {
		t.Fatalf("follower's forward of an envelope that fails the configuration in force: %v", err)
	}
	want = append(want, "stale-good")

	// (d) The same in batches (Broadcast hands runs of checked envelopes over
	// at once): each envelope gets its own outcome, on the leader and through
	// a follower's pipelined forward.
	batch := func(tag string) []byte {
		raw, err := proto.Marshal(cf.tx(t, channel, []byte(tag)))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	errs := leaderCh.OrderBatch(ctx, [][]byte{batch("batch-1"), badRaw, batch("batch-2")}, 0)
	if errs[0] != nil || !errors.Is(errs[1], chain.ErrBadMessage) || errs[2] != nil {
		t.Fatalf("leader's outcomes for good, bad, good: %v", errs)
	}
	errs = followerCh.OrderBatch(ctx, [][]byte{batch("batch-3"), badRaw}, 0)
	if errs[0] != nil || errs[1] == nil || !strings.Contains(errs[1].Error(), "bad normal message") {
		t.Fatalf("follower's outcomes for good, bad: %v", errs)
	}
	want = append(want, "batch-1", "batch-2", "batch-3")
	cf.converge(t, want)
}

// org3Organization describes Org3MSP (material from cryptogen) as
// fabric-config adds it.
func org3Organization(t *testing.T) fabconfigtx.Organization {
	t.Helper()
	dir := t.TempDir()
	n, err := netconfig.Generate(3, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.OrdererOrgs[0].Orderers {
		n.OrdererOrgs[0].Orderers[i].Port = 7050
	}
	for i := range n.PeerOrgs {
		n.PeerOrgs[i].Peers[0].Port = 8051 + 1000*i
	}
	if err := cryptogen.Generate(n, dir); err != nil {
		t.Fatal(err)
	}
	g, err := channelconfig.Genesis(n, dir)
	if err != nil {
		t.Fatal(err)
	}
	ce, err := block.Config(g)
	if err != nil {
		t.Fatal(err)
	}
	full := fabconfigtx.New(ce.Config)
	org, err := full.Application().Organization("Org3MSP").Configuration()
	if err != nil {
		t.Fatal(err)
	}
	return org
}

// loadGen broadcasts envelopes with unique values, round robin over a set of
// nodes, until stopped; an envelope is retried (on the next node) until one
// accepts it. accepted lists the values accepted.
type loadGen struct {
	mu       sync.Mutex
	accepted []string
	errs     []string
	stop     chan struct{}
	done     chan struct{}
}

func startLoad(t *testing.T, cf *clusterFixture, nodes []*running) *loadGen {
	t.Helper()
	var clients []ab.AtomicBroadcastClient
	for _, n := range nodes {
		clients = append(clients, cf.dial(t, n.o.Addrs().Broadcast))
	}
	g := &loadGen{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for i, k := 0, 0; ; i++ {
			v := fmt.Sprintf("load-%d", i)
			env := cf.tx(t, channel, []byte(v))
			for {
				select {
				case <-g.stop:
					return
				default:
				}
				st, info := sendOnce(clients[k%len(clients)], env)
				k++
				if st == cb.Status_SUCCESS {
					g.mu.Lock()
					g.accepted = append(g.accepted, v)
					g.mu.Unlock()
					break
				}
				if st != cb.Status_SERVICE_UNAVAILABLE {
					g.mu.Lock()
					g.errs = append(g.errs, fmt.Sprintf("%s: %v %s", v, st, info))
					g.mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return g
}

// sendOnce broadcasts one envelope on a fresh stream; a broken stream counts
// as SERVICE_UNAVAILABLE.
func sendOnce(c ab.AtomicBroadcastClient, env *cb.Envelope) (cb.Status, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.Broadcast(ctx)
	if err != nil {
		return cb.Status_SERVICE_UNAVAILABLE, err.Error()
	}
	if err := s.Send(env); err != nil {
		return cb.Status_SERVICE_UNAVAILABLE, err.Error()
	}
	r, err := s.Recv()
	if err != nil {
		return cb.Status_SERVICE_UNAVAILABLE, err.Error()
	}
	s.CloseSend()
	return r.Status, r.Info
}

func (g *loadGen) halt() []string {
	close(g.stop)
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.accepted)
}

func (g *loadGen) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.accepted)
}

// consenterOf describes node i of the fixture as a fabric-config consenter.
func (cf *clusterFixture) consenterOf(t *testing.T, i int) orderer.Consenter {
	t.Helper()
	raw, err := os.ReadFile(cf.cfgs[i].TLS.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pem.Decode(raw)
	cert, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	host, port := "127.0.0.1", 0
	addr := cf.cfgs[i].ListenAddress
	if cf.cfgs[i].ClusterListenAddress != "" {
		addr = cf.cfgs[i].ClusterListenAddress
	}
	if _, err := fmt.Sscanf(addr[strings.LastIndex(addr, ":")+1:], "%d", &port); err != nil {
		t.Fatal(err)
	}
	return orderer.Consenter{Address: orderer.EtcdAddress{Host: host, Port: port}, ClientTLSCert: cert, ServerTLSCert: cert}
}

func channelInfo(t *testing.T, cf *clusterFixture, n *running) participation.ChannelInfo {
	t.Helper()
	code, body := do(t, cf.adminClient(t, true), http.MethodGet, "https://"+n.o.Addrs().Admin+"/participation/v1/channels/"+channel)
	if code != http.StatusOK {
		t.Fatalf("channel info: %d %s", code, body)
	}
	var info participation.ChannelInfo
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

// TestMembershipChange adds a fourth consenter to a running 3-node channel and
// then removes the original leader, under steady Broadcast load: the new node
// switches from follower to consenter and orders, the removed leader hands
// leadership over and becomes a follower, and every remaining consenter ends
// with byte-identical blocks holding each accepted envelope exactly once.
func TestMembershipChange(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several orderers")
	}
	cf := newClusterFixtureWith(t, 4, false, clusterOptions{followers: 1})
	ws := []*logWatch{newLogWatch(), newLogWatch(), newLogWatch(), newLogWatch()}
	dumpOnFailure(t, ws...)
	for i := range cf.cfgs {
		cf.cfgs[i].Logger = slog.New(ws[i])
	}
	for i := range 3 {
		cf.nodes[i] = start(t, cf.cfgs[i])
	}
	defer cf.stopAll(t)
	cf.joinAll(t)
	lead := cf.leader(t, 10*time.Second)
	t.Logf("leader: node %d", lead)

	// The fourth orderer joins as a follower and replicates.
	fourth := start(t, cf.cfgs[3])
	cf.nodes[3] = fourth
	if resp, body := join(t, cf.adminClient(t, true), fourth.o.Addrs().Admin, cf.genesis); resp.StatusCode != http.StatusCreated {
		t.Fatalf("join the fourth orderer: %d %s", resp.StatusCode, body)
	}
	if info := channelInfo(t, cf, fourth); info.ConsensusRelation != "follower" {
		t.Fatalf("fourth orderer joined as %q", info.ConsensusRelation)
	}

	load := startLoad(t, cf, []*running{cf.nodes[0], cf.nodes[1], cf.nodes[2]})
	waitUntil(t, 10*time.Second, "load to flow", func() bool { return load.count() >= 20 })

	l := cf.layout
	admin := loadIdentity(t, l, false, "OrdererMSP", ordDomain, cryptogen.AdminUser)
	client := cf.dial(t, cf.nodes[(lead+1)%3].o.Addrs().Broadcast)

	// Add orderer3 as a consenter.
	current, _ := lastConfig(t, cf.nodes[lead])
	tx := fabconfigtx.New(current)
	if err := tx.Orderer().AddConsenter(cf.consenterOf(t, 3)); err != nil {
		t.Fatal(err)
	}
	env, err := configtx.NewUpdateEnvelope(channel, current, tx.UpdatedConfig(), admin)
	if err != nil {
		t.Fatal(err)
	}
	if res := sendUntilAccepted(t, client, env); res.Status != cb.Status_SUCCESS {
		t.Fatalf("add consenter: %v %q", res.Status, res.Info)
	}
	waitUntil(t, 20*time.Second, "the fourth orderer to become a consenter", func() bool {
		st, ok := fourth.o.reg.Statuses()[channel]
		return ok && st.Running && st.Leader != 0 && channelInfo(t, cf, fourth).ConsensusRelation == "consenter"
	})
	t.Log("fourth orderer is a consenter")
	mark := load.count()
	waitUntil(t, 10*time.Second, "more load", func() bool { return load.count() >= mark+20 })

	// Remove the original leader.
	current, _ = lastConfig(t, cf.nodes[lead])
	tx = fabconfigtx.New(current)
	if err := tx.Orderer().RemoveConsenter(cf.consenterOf(t, lead)); err != nil {
		t.Fatal(err)
	}
	env, err = configtx.NewUpdateEnvelope(channel, current, tx.UpdatedConfig(), admin)
	if err != nil {
		t.Fatal(err)
	}
	// Sent to the leader itself: it hands leadership over first.
	if res := sendUntilAccepted(t, cf.dial(t, cf.nodes[lead].o.Addrs().Broadcast), env); res.Status != cb.Status_SUCCESS {
		t.Fatalf("remove the leader: %v %q", res.Status, res.Info)
	}
	removed := cf.nodes[lead]
	waitUntil(t, 20*time.Second, "the removed leader to become a follower", func() bool {
		info := channelInfo(t, cf, removed)
		_, consenting := removed.o.reg.Statuses()[channel]
		return info.ConsensusRelation == "follower" && !consenting
	})
	t.Log("removed leader is a follower")
	cf.nodes[lead] = nil
	newLead := cf.leader(t, 10*time.Second)
	t.Logf("new leader: node %d", newLead)
	mark = load.count()
	waitUntil(t, 10*time.Second, "load after the removal", func() bool { return load.count() >= mark+20 })
	want := load.halt()
	if len(load.errs) > 0 {
		t.Errorf("load refused: %v", load.errs)
	}
	t.Logf("%d envelopes ordered under load", len(want))

	cf.converge(t, want)
	// The removed node follows: it too ends with the same blocks.
	cf.nodes[lead] = removed
	cf.converge(t, want)

	cfgs := configBlocks(t, cf.nodes[3])
	if len(cfgs) != 2 {
		t.Fatalf("config blocks %v, want 2", cfgs)
	}
	ch, _ := cf.nodes[3].o.reg.Channel(channel)
	first, _ := ch.Block(cfgs[0])
	second, _ := ch.Block(cfgs[1])
	if md := raftIDs(t, first); !slices.Equal(md.ConsenterIds, []uint64{1, 2, 3, 4}) || md.NextConsenterId != 5 {
		t.Errorf("first config block raft metadata %v next %d, want [1 2 3 4] next 5", md.ConsenterIds, md.NextConsenterId)
	}
	wantIDs := slices.DeleteFunc([]uint64{1, 2, 3, 4}, func(id uint64) bool { return id == uint64(lead+1) })
	if md := raftIDs(t, second); !slices.Equal(md.ConsenterIds, wantIDs) || md.NextConsenterId != 5 {
		t.Errorf("second config block raft metadata %v next %d, want %v next 5", md.ConsenterIds, md.NextConsenterId, wantIDs)
	}
	tip, _ := ch.Block(ch.Height() - 1)
	if n, _ := block.LastConfigIndex(tip); n != cfgs[1] {
		t.Errorf("last block's last config %d, want %d", n, cfgs[1])
	}
	// Every block a consenter's raft log still holds names, as its RaftIndex,
	// the index of the entry that carries it: the conf changes in between
	// count.
	cf.stopAll(t)
	for i := range cf.nodes {
		cf.nodes[i] = nil
	}
	for i, cfg := range cf.cfgs {
		if i == lead { // removed: its raft data is gone
			continue
		}
		checkRaftIndexes(t, filepath.Join(cfg.DataDir, "channels", channel, "raft"))
	}

	for _, c := range []struct {
		node int
		msg  string
	}{
		{3, "named a consenter by a config block; joining the raft group"},
		{lead, "config update removes this leader; transferring leadership first"},
		{lead, "removed from the consenters by a config block; following the channel"},
		{newLead, "raft configuration change proposed"},
	} {
		if ws[c.node].count(c.msg) == 0 {
			t.Errorf("node %d never logged %q", c.node, c.msg)
		}
	}
}

// TestConsenterRemovalKeepsQuorum: with one of three consenters down, the
// leader refuses to remove a live one (the two left would need both, and
// only one is up: Fabric's avoidable quorum loss) with an explaining
// message, but removes the dead one, and the two remaining nodes go on
// ordering.
func TestConsenterRemovalKeepsQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several orderers")
	}
	cf := newClusterFixture(t, 3, false)
	for i, cfg := range cf.cfgs {
		cf.nodes[i] = start(t, cfg)
	}
	defer cf.stopAll(t)
	cf.joinAll(t)
	lead := cf.leader(t, 10*time.Second)
	before := seq("before", 3)
	cf.broadcast(t, before)
	cf.converge(t, before)

	down, alive := (lead+1)%3, (lead+2)%3
	cf.nodes[down].stop(t)
	cf.nodes[down] = nil
	// raft's CheckQuorum forgets the stopped node's activity after an election
	// timeout; give it two.
	time.Sleep(2 * electionTick * tickInterval)

	admin := loadIdentity(t, cf.layout, false, "OrdererMSP", ordDomain, cryptogen.AdminUser)
	client := cf.dial(t, cf.nodes[lead].o.Addrs().Broadcast)
	removal := func(i int) *cb.Envelope {
		current, _ := lastConfig(t, cf.nodes[lead])
		tx := fabconfigtx.New(current)
		if err := tx.Orderer().RemoveConsenter(cf.consenterOf(t, i)); err != nil {
			t.Fatal(err)
		}
		env, err := configtx.NewUpdateEnvelope(channel, current, tx.UpdatedConfig(), admin)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	st, info := sendOnce(client, removal(alive))
	if st != cb.Status_SERVICE_UNAVAILABLE || !strings.Contains(info, "2 out of 3 nodes are alive, configuration will result in quorum loss") {
		t.Fatalf("removing a live consenter while another is down: %v %q, want SERVICE_UNAVAILABLE about quorum loss", st, info)
	}
	t.Logf("refused: %s", info)
	if res := sendUntilAccepted(t, client, removal(down)); res.Status != cb.Status_SUCCESS {
		t.Fatalf("removing the dead consenter: %v %q", res.Status, res.Info)
	}
	waitUntil(t, 10*time.Second, "the config block on both live nodes", func() bool {
		return len(configBlocks(t, cf.nodes[lead])) == 1 && len(configBlocks(t, cf.nodes[alive])) == 1
	})
	// Straight to the leader: forwards across the membership change are
	// exercised by TestMembershipChange.
	after := seq("after", 3)
	for _, v := range after {
		if res := sendUntilAccepted(t, client, cf.tx(t, channel, []byte(v))); res.Status != cb.Status_SUCCESS {
			t.Fatalf("broadcast %s to the remaining leader: %v %q", v, res.Status, res.Info)
		}
	}
	cf.converge(t, append(before, after...))
}
