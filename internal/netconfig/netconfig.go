// Package netconfig owns the network description file (network.yaml): which
// organisations, orderers and peers a consortium has, where they listen, and the
// channel parameters its genesis block is built from. It is read once by the cairn
// commands and passed down as typed values; nothing else parses the file.
package netconfig

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Network is a whole consortium as described in network.yaml.
type Network struct {
	// OrdererOrgs are the organisations that run ordering nodes.
	OrdererOrgs []OrdererOrg `yaml:"ordererOrganizations"`
	// PeerOrgs are the application organisations (peers, admins, users).
	PeerOrgs []PeerOrg `yaml:"organizations"`
	// Channel holds the parameters of the channel created at start.
	Channel Channel `yaml:"channel"`
}

// OrdererOrg is an organisation that runs orderers.
type OrdererOrg struct {
	Name     string `yaml:"name"`
	MSPID    string `yaml:"mspId"`
	Domain   string `yaml:"domain"`
	Orderers []Node `yaml:"orderers"`
}

// PeerOrg is an application organisation.
type PeerOrg struct {
	Name   string `yaml:"name"`
	MSPID  string `yaml:"mspId"`
	Domain string `yaml:"domain"`
	Peers  []Node `yaml:"peers"`
	// Users are the names of ordinary client identities besides the admin,
	// e.g. ["User1"]; each gets User1@<domain>.
	Users []string `yaml:"users"`
}

// Node is one orderer or peer. A zero port means "pick a free one at start".
type Node struct {
	// Name is the short host label, e.g. "peer0"; the node's full name is
	// Name + "." + the organisation's domain.
	Name string `yaml:"name"`
	// Host is the address the node listens on and is reached at.
	Host string `yaml:"host"`
	// Port serves the node's main gRPC services.
	Port int `yaml:"port"`
	// ClusterPort serves orderer-to-orderer traffic (orderers only; 0 = same as Port).
	ClusterPort int `yaml:"clusterPort,omitempty"`
	// AdminPort serves the channel participation API (orderers only).
	AdminPort int `yaml:"adminPort,omitempty"`
	// OperationsPort serves /healthz and /metrics.
	OperationsPort int `yaml:"operationsPort"`
}

// FullName is the node's DNS-style name within its organisation's domain.
func (n Node) FullName(domain string) string { return n.Name + "." + domain }

// Address is host:port of the node's main gRPC endpoint.
func (n Node) Address() string { return fmt.Sprintf("%s:%d", n.Host, n.Port) }

// Channel holds the parameters written into the channel's genesis block.
type Channel struct {
	Name         string    `yaml:"name"`
	BatchTimeout Duration  `yaml:"batchTimeout"`
	BatchSize    BatchSize `yaml:"batchSize"`
	Raft         Raft      `yaml:"raft"`
}

// BatchSize bounds the blocks the orderer cuts.
type BatchSize struct {
	MaxMessageCount   uint32   `yaml:"maxMessageCount"`
	AbsoluteMaxBytes  ByteSize `yaml:"absoluteMaxBytes"`
	PreferredMaxBytes ByteSize `yaml:"preferredMaxBytes"`
}

// Raft holds the EtcdRaft options of the channel.
type Raft struct {
	TickInterval         Duration `yaml:"tickInterval"`
	ElectionTick         uint32   `yaml:"electionTick"`
	HeartbeatTick        uint32   `yaml:"heartbeatTick"`
	MaxInflightBlocks    uint32   `yaml:"maxInflightBlocks"`
	SnapshotIntervalSize ByteSize `yaml:"snapshotIntervalSize"`
}

// Default is the smallest network: one orderer organisation with one
// orderer, one application organisation Org1MSP with one peer, channel
// mychannel. Tests and benchmarks that need one of each use it; `cairn network
// up` starts Consortium. Every port is 0, so the network picks free ones at
// start.
func Default() *Network {
	return &Network{
		OrdererOrgs: []OrdererOrg{{
			Name: "Orderer", MSPID: "OrdererMSP", Domain: "example.com",
			Orderers: []Node{{Name: "orderer0", Host: "127.0.0.1"}},
		}},
		PeerOrgs: []PeerOrg{{
			Name: "Org1", MSPID: "Org1MSP", Domain: "org1.example.com",
			Peers: []Node{{Name: "peer0", Host: "127.0.0.1"}},
			Users: []string{"User1"},
		}},
		Channel: DefaultChannel("mychannel"),
	}
}

// DefaultChannel returns channel parameters tuned for a local network: blocks are
// cut after 500 messages or 250 ms, whichever comes first.
func DefaultChannel(name string) Channel {
	return Channel{
		Name:         name,
		BatchTimeout: Duration(250 * time.Millisecond),
		BatchSize: BatchSize{
			MaxMessageCount:   500,
			AbsoluteMaxBytes:  10 << 20,
			PreferredMaxBytes: 2 << 20,
		},
		Raft: Raft{
			TickInterval:         Duration(100 * time.Millisecond),
			ElectionTick:         10,
			HeartbeatTick:        1,
			MaxInflightBlocks:    5,
			SnapshotIntervalSize: 16 << 20,
		},
	}
}

// Load reads and validates a network description. Channel fields left empty take
// the defaults of DefaultChannel.
func Load(path string) (*Network, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read network description: %w", err)
	}
	return Parse(raw)
}

// Parse decodes and validates a network description.
func Parse(raw []byte) (*Network, error) {
	var n Network
	if err := yaml.Unmarshal(raw, &n); err != nil {
		return nil, fmt.Errorf("parse network description: %w", err)
	}
	n.fillDefaults()
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return &n, nil
}

func (n *Network) fillDefaults() {
	d := DefaultChannel(n.Channel.Name)
	if n.Channel.Name == "" {
		n.Channel.Name = "mychannel"
	}
	if n.Channel.BatchTimeout == 0 {
		n.Channel.BatchTimeout = d.BatchTimeout
	}
	if n.Channel.BatchSize.MaxMessageCount == 0 {
		n.Channel.BatchSize.MaxMessageCount = d.BatchSize.MaxMessageCount
	}
	if n.Channel.BatchSize.AbsoluteMaxBytes == 0 {
		n.Channel.BatchSize.AbsoluteMaxBytes = d.BatchSize.AbsoluteMaxBytes
	}
	if n.Channel.BatchSize.PreferredMaxBytes == 0 {
		n.Channel.BatchSize.PreferredMaxBytes = d.BatchSize.PreferredMaxBytes
	}
	r := &n.Channel.Raft
	if r.TickInterval == 0 {
		r.TickInterval = d.Raft.TickInterval
	}
	if r.ElectionTick == 0 {
		r.ElectionTick = d.Raft.ElectionTick
	}
	if r.HeartbeatTick == 0 {
		r.HeartbeatTick = d.Raft.HeartbeatTick
	}
	if r.MaxInflightBlocks == 0 {
		r.MaxInflightBlocks = d.Raft.MaxInflightBlocks
	}
	if r.SnapshotIntervalSize == 0 {
		r.SnapshotIntervalSize = d.Raft.SnapshotIntervalSize
	}
	for i := range n.OrdererOrgs {
		for j := range n.OrdererOrgs[i].Orderers {
			if n.OrdererOrgs[i].Orderers[j].Host == "" {
				n.OrdererOrgs[i].Orderers[j].Host = "127.0.0.1"
			}
		}
	}
	for i := range n.PeerOrgs {
		for j := range n.PeerOrgs[i].Peers {
			if n.PeerOrgs[i].Peers[j].Host == "" {
				n.PeerOrgs[i].Peers[j].Host = "127.0.0.1"
			}
		}
	}
}

// Validate reports the first problem that would stop the network from being built.
func (n *Network) Validate() error {
	var errs []error
	if len(n.OrdererOrgs) == 0 {
		errs = append(errs, errors.New("no orderer organisation"))
	}
	if len(n.PeerOrgs) == 0 {
		errs = append(errs, errors.New("no application organisation"))
	}
	seenMSP := map[string]bool{}
	seenName := map[string]bool{}
	checkOrg := func(kind, name, mspID, domain string, nodes []Node) {
		if name == "" || mspID == "" || domain == "" {
			errs = append(errs, fmt.Errorf("%s organisation %q: name, mspId and domain are required", kind, name))
		}
		if mspID != "" && !configName.MatchString(mspID) {
			// The MSP ID names the organisation's group in the channel
			// configuration, where Fabric allows only these characters.
			errs = append(errs, fmt.Errorf("%s organisation %q: mspId %q may hold only letters, digits, '.' and '-'", kind, name, mspID))
		}
		if seenMSP[mspID] {
			errs = append(errs, fmt.Errorf("mspId %q used twice", mspID))
		}
		seenMSP[mspID] = true
		if len(nodes) == 0 {
			errs = append(errs, fmt.Errorf("%s organisation %q has no nodes", kind, name))
		}
		for _, nd := range nodes {
			if nd.Name == "" {
				errs = append(errs, fmt.Errorf("%s organisation %q: a node has no name", kind, name))
			}
			full := nd.FullName(domain)
			if seenName[full] {
				errs = append(errs, fmt.Errorf("node %q defined twice", full))
			}
			seenName[full] = true
			for _, p := range []int{nd.Port, nd.ClusterPort, nd.AdminPort, nd.OperationsPort} {
				if p < 0 || p > 65535 {
					errs = append(errs, fmt.Errorf("node %q: port %d out of range", full, p))
				}
			}
		}
	}
	for _, o := range n.OrdererOrgs {
		checkOrg("orderer", o.Name, o.MSPID, o.Domain, o.Orderers)
	}
	for _, o := range n.PeerOrgs {
		checkOrg("application", o.Name, o.MSPID, o.Domain, o.Peers)
	}
	bs := n.Channel.BatchSize
	if bs.PreferredMaxBytes > bs.AbsoluteMaxBytes {
		errs = append(errs, fmt.Errorf("channel: preferredMaxBytes %d exceeds absoluteMaxBytes %d", bs.PreferredMaxBytes, bs.AbsoluteMaxBytes))
	}
	if n.Channel.Name != strings.ToLower(n.Channel.Name) {
		errs = append(errs, fmt.Errorf("channel name %q must be lower case", n.Channel.Name))
	}
	return errors.Join(errs...)
}

// configName is Fabric's rule for names of channel configuration elements.
var configName = regexp.MustCompile(`^[a-zA-Z0-9.-]+$`)

// Duration is a time.Duration written as "250ms" or "2s" in YAML.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalYAML writes the duration in Go's notation.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML reads "250ms", "2s" and the like.
func (d *Duration) UnmarshalYAML(node *yaml.Node) error {
	v, err := time.ParseDuration(node.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", node.Line, err)
	}
	*d = Duration(v)
	return nil
}

// ByteSize is a size in bytes, written as 1048576, "512 KB", "10 MB" or "1 GB".
type ByteSize uint32

// UnmarshalYAML reads plain numbers and the KB/MB/GB suffixes Fabric's configtx.yaml uses.
func (b *ByteSize) UnmarshalYAML(node *yaml.Node) error {
	s := strings.ToUpper(strings.TrimSpace(node.Value))
	mult := uint64(1)
	for _, u := range []struct {
		suffix string
		m      uint64
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			mult = u.m
			s = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("line %d: byte size %q: %w", node.Line, node.Value, err)
	}
	if v*mult > 1<<32-1 {
		return fmt.Errorf("line %d: byte size %q exceeds 4 GB", node.Line, node.Value)
	}
	*b = ByteSize(v * mult)
	return nil
}

// Limits of Generate: enough for any local experiment, small enough that a
// typo (--orgs 100) fails fast instead of starting hundreds of processes.
const (
	MaxOrgs        = 10
	MaxPeersPerOrg = 8
	MaxOrderers    = 7
)

// The shape of the default local consortium (Consortium): what `cairn network
// up` starts without --orgs, --peers-per-org, --orderers or --config.
const (
	DefaultOrgs        = 2
	DefaultPeersPerOrg = 2
	DefaultOrderers    = 3
)

// Consortium is the default local consortium: 3 raft orderers of OrdererMSP,
// organisations Org1MSP and Org2MSP with 2 peers each, channel mychannel whose
// chaincodes default to the MAJORITY endorsement policy.
func Consortium() *Network {
	n, err := Generate(DefaultOrgs, DefaultPeersPerOrg, DefaultOrderers)
	if err != nil {
		panic("netconfig: the default consortium is invalid: " + err.Error()) // constants above; cannot happen
	}
	return n
}

// Generate builds the standard local consortium of a given size: the orderer
// organisation OrdererMSP (domain example.com) with orderer0 … orderer<orderers-1>,
// and application organisations Org1MSP … Org<orgs>MSP (domains
// org1.example.com …), each with peer0 … peer<peersPerOrg-1> and a user User1,
// on channel mychannel. Every port is 0, so the network picks free ones at start.
// Generate(1, 1, 1) equals Default().
func Generate(orgs, peersPerOrg, orderers int) (*Network, error) {
	var errs []error
	if orgs < 1 || orgs > MaxOrgs {
		errs = append(errs, fmt.Errorf("organisations: %d is outside 1..%d", orgs, MaxOrgs))
	}
	if peersPerOrg < 1 || peersPerOrg > MaxPeersPerOrg {
		errs = append(errs, fmt.Errorf("peers per organisation: %d is outside 1..%d", peersPerOrg, MaxPeersPerOrg))
	}
	if orderers < 1 || orderers > MaxOrderers {
		errs = append(errs, fmt.Errorf("orderers: %d is outside 1..%d", orderers, MaxOrderers))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	n := &Network{
		OrdererOrgs: []OrdererOrg{{Name: "Orderer", MSPID: "OrdererMSP", Domain: "example.com"}},
		Channel:     DefaultChannel("mychannel"),
	}
	for i := 0; i < orderers; i++ {
		n.OrdererOrgs[0].Orderers = append(n.OrdererOrgs[0].Orderers, Node{Name: fmt.Sprintf("orderer%d", i), Host: "127.0.0.1"})
	}
	for o := 1; o <= orgs; o++ {
		org := PeerOrg{
			Name:   fmt.Sprintf("Org%d", o),
			MSPID:  fmt.Sprintf("Org%dMSP", o),
			Domain: fmt.Sprintf("org%d.example.com", o),
			Users:  []string{"User1"},
		}
		for p := 0; p < peersPerOrg; p++ {
			org.Peers = append(org.Peers, Node{Name: fmt.Sprintf("peer%d", p), Host: "127.0.0.1"})
		}
		n.PeerOrgs = append(n.PeerOrgs, org)
	}
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("generated network is invalid: %w", err)
	}
	return n, nil
}
