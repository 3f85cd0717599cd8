package localnet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// Report is what `cairn network status --json` prints:
//
//	{"nodes": [{"name": "orderer0.example.com", "role": "orderer", "org": "OrdererMSP",
//	  "address": "127.0.0.1:7050", "pid": 4242, "healthy": true,
//	  "height": {"mychannel": 5}, "leader": true, "term": 2}, …]}
//
// Every node carries every field. Role is orderer, peer, ca, chaincode or
// gateway. Height maps each channel the node serves to its block height (the
// number of blocks, so the genesis block alone is height 1); it is {} when the
// height cannot be read (the node is down, or is a chaincode). Leader and Term
// are the node's raft state on the network's channel, for orderers only
// (false and 0 for every other role).
type Report struct {
	Nodes []NodeStatus `json:"nodes"`
}

// NodeStatus is one node of a Report.
type NodeStatus struct {
	Name    string            `json:"name"`
	Role    string            `json:"role"`
	Org     string            `json:"org"`
	Address string            `json:"address"`
	PID     int               `json:"pid"`
	Healthy bool              `json:"healthy"`
	Height  map[string]uint64 `json:"height"`
	Leader  bool              `json:"leader"`
	Term    uint64            `json:"term"`
	// Problems say why a node is unhealthy or a value is missing; the table
	// shows them, the JSON does not.
	Problems []string `json:"-"`
}

// probeTimeout bounds each question asked of a node.
const probeTimeout = 3 * time.Second

// Status inspects the network recorded in dir: whether each process runs,
// its operations /healthz, block heights (orderers through the channel
// participation API as the orderer organisation's admin, peers through qscc
// GetChainInfo on their gateway as the organisation's user1) and, for
// orderers, raft leadership and term from their /metrics. Nodes are probed
// concurrently; a node that does not answer is reported, not an error.
func Status(ctx context.Context, dir string) (*Report, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s, err := loadState(dir)
	if err != nil {
		return nil, fmt.Errorf("no network recorded in %s (was it started with 'cairn network up --detach'?): %w", dir, err)
	}
	info, err := LoadInfo(dir)
	if err != nil {
		return nil, err
	}
	desc, err := netconfig.Load(filepath.Join(dir, "network.yaml"))
	if err != nil {
		return nil, err
	}
	pr := &prober{dir: dir, info: info, net: desc, hc: &http.Client{Timeout: probeTimeout}}
	defer pr.hc.CloseIdleConnections()

	rep := &Report{Nodes: make([]NodeStatus, len(s.Processes))}
	var wg sync.WaitGroup
	for i, p := range s.Processes {
		rep.Nodes[i] = NodeStatus{Name: p.Name, Role: p.Role, Org: p.Org, Address: p.Address, PID: p.PID, Height: map[string]uint64{}}
		wg.Add(1)
		go func(ns *NodeStatus, p *Process) {
			defer wg.Done()
			pr.probe(ctx, ns, p)
		}(&rep.Nodes[i], p)
	}
	wg.Wait()
	return rep, nil
}

// prober asks the nodes of one network about their state.
type prober struct {
	dir  string
	info *Info
	net  *netconfig.Network
	hc   *http.Client
}

func (pr *prober) probe(ctx context.Context, ns *NodeStatus, p *Process) {
	problem := func(format string, args ...any) { ns.Problems = append(ns.Problems, fmt.Sprintf(format, args...)) }
	if !alive(p.PID) {
		problem("not running")
		return
	}
	if p.OperationsAddress == "" {
		// A chaincode has no operations endpoint: running is all we know.
		ns.Healthy = true
		return
	}
	if err := pr.health(ctx, p.OperationsAddress); err != nil {
		problem("healthz: %v", err)
	} else {
		ns.Healthy = true
	}
	switch p.Role {
	case "orderer":
		heights, err := pr.ordererHeights(ctx, p)
		if err != nil {
			problem("height: %v", err)
		}
		for ch, h := range heights {
			ns.Height[ch] = h
		}
		text, err := pr.get(ctx, "http://"+p.OperationsAddress+"/metrics")
		if err != nil {
			problem("metrics: %v", err)
			return
		}
		rs, err := ParseRaftMetrics(strings.NewReader(text))
		if err != nil {
			problem("metrics: %v", err)
			return
		}
		r := rs[pr.info.Channel]
		ns.Leader, ns.Term = r.Leader, r.Term
	case "peer":
		h, err := pr.peerHeight(ctx, p)
		if err != nil {
			problem("height: %v", err)
			return
		}
		ns.Height[pr.info.Channel] = h
	}
}

// health asks an operations endpoint's /healthz; only 200 is healthy.
func (pr *prober) health(ctx context.Context, addr string) error {
	_, err := pr.get(ctx, "http://"+addr+"/healthz")
	return err
}

// get fetches a URL with pr.hc and returns the body of a 200 answer.
func (pr *prober) get(ctx context.Context, u string) (string, error) {
	return httpGet(ctx, pr.hc, u)
}

func httpGet(ctx context.Context, hc *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// ordererHeights lists the orderer's channels and their heights through the
// channel participation API, as the orderer organisation's admin.
func (pr *prober) ordererHeights(ctx context.Context, p *Process) (map[string]uint64, error) {
	var org *netconfig.OrdererOrg
	for i := range pr.net.OrdererOrgs {
		if pr.net.OrdererOrgs[i].MSPID == p.Org {
			org = &pr.net.OrdererOrgs[i]
		}
	}
	var admin string
	for _, o := range pr.info.Orderers {
		if o.Name == p.Name {
			admin = o.AdminAddress
		}
	}
	if org == nil || admin == "" {
		return nil, fmt.Errorf("%s is not in network.yaml/network.json", p.Name)
	}
	l := cryptogen.Layout{Root: filepath.Join(pr.dir, "crypto")}
	tlsCfg, err := comm.ClientTLS([]string{l.TLSCACertPath(false, org.Domain)},
		l.UserTLSCertPath(false, org.Domain, cryptogen.AdminUser), l.UserTLSKeyPath(false, org.Domain, cryptogen.AdminUser), "")
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: probeTimeout}
	defer hc.CloseIdleConnections()
	base := "https://" + admin + "/participation/v1/channels"
	raw, err := httpGet(ctx, hc, base)
	if err != nil {
		return nil, err
	}
	var list struct {
		Channels []struct {
			Name string `json:"name"`
		} `json:"channels"`
	}
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		return nil, fmt.Errorf("channel list: %w", err)
	}
	heights := map[string]uint64{}
	for _, ch := range list.Channels {
		raw, err := httpGet(ctx, hc, base+"/"+url.PathEscape(ch.Name))
		if err != nil {
			return heights, err
		}
		var one struct {
			Height uint64 `json:"height"`
		}
		if err := json.Unmarshal([]byte(raw), &one); err != nil {
			return heights, fmt.Errorf("channel %s: %w", ch.Name, err)
		}
		heights[ch.Name] = one.Height
	}
	return heights, nil
}

// peerHeight asks a peer's qscc GetChainInfo through its gateway as its
// organisation's user1.
func (pr *prober) peerHeight(ctx context.Context, p *Process) (uint64, error) {
	for oi, org := range pr.info.Organizations {
		for pi, peer := range org.Peers {
			if peer.Name != p.Name {
				continue
			}
			gw, conn, err := ConnectGateway(pr.info, oi, pi, "user1")
			if err != nil {
				return 0, err
			}
			defer conn.Close()
			defer gw.Close()
			ctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			raw, err := gw.GetNetwork(pr.info.Channel).GetContract("qscc").EvaluateWithContext(ctx, "GetChainInfo", client.WithArguments(pr.info.Channel))
			if err != nil {
				return 0, fmt.Errorf("qscc GetChainInfo: %w", err)
			}
			ci := &cb.BlockchainInfo{}
			if err := proto.Unmarshal(raw, ci); err != nil {
				return 0, fmt.Errorf("qscc GetChainInfo answer: %w", err)
			}
			return ci.GetHeight(), nil
		}
	}
	return 0, fmt.Errorf("%s is not in network.json", p.Name)
}

// RaftState is an orderer's raft state on one channel, from its metrics.
type RaftState struct {
	Leader bool
	Term   uint64
}

// ParseRaftMetrics reads an orderer's Prometheus text exposition and returns
// its raft state per channel, from cairn_orderer_is_leader and
// cairn_orderer_raft_term. A channel missing from one of them gets the zero
// value for it.
func ParseRaftMetrics(r io.Reader) (map[string]RaftState, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := map[string]RaftState{}
	each := func(name string, set func(st *RaftState, v float64)) {
		for _, m := range families[name].GetMetric() {
			ch, ok := label(m, "channel")
			if !ok {
				continue
			}
			v := m.GetGauge().GetValue()
			if m.GetGauge() == nil {
				v = m.GetUntyped().GetValue() // no # TYPE line
			}
			st := out[ch]
			set(&st, v)
			out[ch] = st
		}
	}
	each("cairn_orderer_is_leader", func(st *RaftState, v float64) { st.Leader = v == 1 })
	each("cairn_orderer_raft_term", func(st *RaftState, v float64) {
		if v >= 0 && v < 1<<53 {
			st.Term = uint64(v)
		}
	})
	return out, nil
}

func label(m *dto.Metric, name string) (string, bool) {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue(), true
		}
	}
	return "", false
}

// WriteTable renders a report as an aligned table, one node a line.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tORG\tADDRESS\tPID\tHEALTH\tHEIGHT\tRAFT\tNOTES")
	for _, n := range r.Nodes {
		health := "down"
		switch {
		case n.Healthy:
			health = "ok"
		case alive(n.PID):
			health = "unhealthy"
		}
		raft := "-"
		if n.Role == "orderer" && n.Term > 0 {
			raft = fmt.Sprintf("follower (term %d)", n.Term)
			if n.Leader {
				raft = fmt.Sprintf("LEADER (term %d)", n.Term)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.Org, orDash(n.Address), n.PID, health,
			formatHeights(n.Height), raft, strings.Join(n.Problems, "; "))
	}
	return tw.Flush()
}

func formatHeights(h map[string]uint64) string {
	if len(h) == 0 {
		return "-"
	}
	chs := make([]string, 0, len(h))
	for ch := range h {
		chs = append(chs, ch)
	}
	sort.Strings(chs)
	parts := make([]string, len(chs))
	for i, ch := range chs {
		parts[i] = fmt.Sprintf("%s=%d", ch, h[ch])
	}
	return strings.Join(parts, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// leaderWait bounds how long Up waits for the channel's raft group to elect
// a leader: a few election timeouts, not the whole bring-up.
const leaderWait = 30 * time.Second

// waitRaftLeader waits until an orderer reports, on its /metrics, that it
// leads the network's channel, so that the first transactions are not
// refused with "no raft leader".
func (n *Network) waitRaftLeader(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	hc := &http.Client{Timeout: probeTimeout}
	defer hc.CloseIdleConnections()
	var last error
	for {
		for _, p := range n.procs {
			if p.Role != "orderer" {
				continue
			}
			text, err := httpGet(ctx, hc, "http://"+p.OperationsAddress+"/metrics")
			if err != nil {
				last = fmt.Errorf("%s: %w", p.Name, err)
				continue
			}
			rs, err := ParseRaftMetrics(strings.NewReader(text))
			if err != nil {
				last = fmt.Errorf("%s: %w", p.Name, err)
				continue
			}
			if rs[n.net.Channel.Name].Leader {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("no orderer became raft leader of channel %s within %s (last error: %v)", n.net.Channel.Name, leaderWait, last)
			}
			return fmt.Errorf("no orderer became raft leader of channel %s within %s (see the orderer logs in %s)", n.net.Channel.Name, leaderWait, filepath.Join(n.Dir, "logs"))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
