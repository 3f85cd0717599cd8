// Package channelconfig owns a channel's configuration: building the genesis
// config block from a network description (with fabric-config), and reading a
// config block into an immutable Bundle — the channel's MSPs, policy manager,
// orderer parameters and application organisations. A config change builds a
// new Bundle; a Bundle is never modified, so it is safe to share across
// goroutines.
package channelconfig

import (
	"encoding/pem"
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/hyperledger/fabric-config/configtx"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/msp"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// Bundle is the parsed configuration of one channel at one config sequence.
type Bundle struct {
	channelID string
	sequence  uint64
	config    *cb.Config
	msps      *msp.Manager
	policies  *policy.Manager
	orderer   OrdererConfig
	app       ApplicationConfig
}

// OrdererConfig is the ordering part of a channel's configuration.
type OrdererConfig struct {
	BatchTimeout      time.Duration
	MaxMessageCount   uint32
	AbsoluteMaxBytes  uint32
	PreferredMaxBytes uint32
	Consenters        []Consenter
	Raft              RaftOptions
	// Endpoints are every orderer organisation's endpoints, host:port.
	Endpoints []string
	// OrgEndpoints maps an orderer organisation's MSP ID to its endpoints.
	OrgEndpoints map[string][]string
	// TLSRootCerts are the PEM TLS CA certificates of the orderer organisations,
	// for dialling orderers.
	TLSRootCerts [][]byte
}

// Consenter is one member of the channel's Raft group.
type Consenter struct {
	Host          string
	Port          uint32
	ClientTLSCert []byte // PEM
	ServerTLSCert []byte // PEM
}

// RaftOptions are the EtcdRaft options of the channel.
type RaftOptions struct {
	TickInterval         time.Duration
	ElectionTick         uint32
	HeartbeatTick        uint32
	MaxInflightBlocks    uint32
	SnapshotIntervalSize uint32
}

// ApplicationConfig is the application part of a channel's configuration.
type ApplicationConfig struct {
	Orgs []AppOrg
	// ACLs maps resource names (e.g. "peer/Propose") to policy paths.
	ACLs map[string]string
}

// AppOrg is an application organisation.
type AppOrg struct {
	// Name is the organisation's config group name (its policies live under
	// /Channel/Application/<Name>).
	Name         string
	MSPID        string
	AnchorPeers  []string
	TLSRootCerts [][]byte // PEM
}

// FromBlock reads a config block into a Bundle.
func FromBlock(b *cb.Block) (*Bundle, error) {
	ce, err := block.Config(b)
	if err != nil {
		return nil, err
	}
	ch, err := block.ChannelHeader(b, 0)
	if err != nil {
		return nil, err
	}
	return New(ch.ChannelId, ce.Config)
}

// New parses a channel configuration.
func New(channelID string, config *cb.Config) (*Bundle, error) {
	if config == nil || config.ChannelGroup == nil {
		return nil, fmt.Errorf("channel %s: configuration has no channel group", channelID)
	}
	if channelID == "" {
		return nil, fmt.Errorf("configuration names no channel")
	}
	msps, err := collectMSPs(config.ChannelGroup)
	if err != nil {
		return nil, fmt.Errorf("channel %s: %w", channelID, err)
	}
	ids := msp.NewManager(msps...)
	pm, err := policy.NewManager(config.ChannelGroup, ids)
	if err != nil {
		return nil, fmt.Errorf("channel %s: policies: %w", channelID, err)
	}
	b := &Bundle{channelID: channelID, sequence: config.Sequence, config: config, msps: ids, policies: pm}
	ctx := configtx.New(config)
	if config.ChannelGroup.Groups[configtx.OrdererGroupKey] != nil {
		if b.orderer, err = ordererConfig(ctx); err != nil {
			return nil, fmt.Errorf("channel %s: orderer configuration: %w", channelID, err)
		}
	}
	if config.ChannelGroup.Groups[configtx.ApplicationGroupKey] != nil {
		if b.app, err = applicationConfig(ctx); err != nil {
			return nil, fmt.Errorf("channel %s: application configuration: %w", channelID, err)
		}
	}
	return b, nil
}

// ChannelID is the channel's name.
func (b *Bundle) ChannelID() string { return b.channelID }

// Sequence is the configuration's sequence number (0 in the genesis block).
func (b *Bundle) Sequence() uint64 { return b.sequence }

// Config is the raw configuration tree. Callers must not modify it.
func (b *Bundle) Config() *cb.Config { return b.config }

// MSPs deserialises and validates identities of the channel's organisations.
func (b *Bundle) MSPs() *msp.Manager { return b.msps }

// Policies evaluates the channel's policies by path.
func (b *Bundle) Policies() *policy.Manager { return b.policies }

// Orderer is the ordering configuration.
func (b *Bundle) Orderer() OrdererConfig { return b.orderer }

// Application is the application configuration.
func (b *Bundle) Application() ApplicationConfig { return b.app }

// ACLPolicy is the policy path guarding a resource (e.g. "peer/Propose"), or
// def when the channel defines none for it.
func (b *Bundle) ACLPolicy(resource, def string) string {
	if p, ok := b.app.ACLs[resource]; ok && p != "" {
		if p[0] != '/' {
			return "/Channel/Application/" + p
		}
		return p
	}
	return def
}

// collectMSPs finds the MSP of every organisation under the application and
// orderer groups.
func collectMSPs(channel *cb.ConfigGroup) ([]*msp.MSP, error) {
	var out []*msp.MSP
	seen := map[string]bool{}
	for _, section := range []string{configtx.ApplicationGroupKey, configtx.OrdererGroupKey} {
		g := channel.Groups[section]
		if g == nil {
			continue
		}
		names := make([]string, 0, len(g.Groups))
		for n := range g.Groups {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			v := g.Groups[n].Values[configtx.MSPKey]
			if v == nil {
				return nil, fmt.Errorf("organisation %s has no MSP", n)
			}
			mc := &mspproto.MSPConfig{}
			if err := proto.Unmarshal(v.Value, mc); err != nil {
				return nil, fmt.Errorf("organisation %s MSP: %w", n, err)
			}
			m, err := msp.FromConfigMSP(mc)
			if err != nil {
				return nil, fmt.Errorf("organisation %s MSP: %w", n, err)
			}
			if seen[m.ID()] {
				continue
			}
			seen[m.ID()] = true
			out = append(out, m)
		}
	}
	return out, nil
}

func ordererConfig(ctx configtx.ConfigTx) (OrdererConfig, error) {
	o, err := ctx.Orderer().Configuration()
	if err != nil {
		return OrdererConfig{}, err
	}
	oc := OrdererConfig{
		BatchTimeout:      o.BatchTimeout,
		MaxMessageCount:   o.BatchSize.MaxMessageCount,
		AbsoluteMaxBytes:  o.BatchSize.AbsoluteMaxBytes,
		PreferredMaxBytes: o.BatchSize.PreferredMaxBytes,
		OrgEndpoints:      map[string][]string{},
	}
	for _, c := range o.EtcdRaft.Consenters {
		oc.Consenters = append(oc.Consenters, Consenter{
			Host:          c.Address.Host,
			Port:          uint32(c.Address.Port),
			ClientTLSCert: certPEM(c.ClientTLSCert.Raw),
			ServerTLSCert: certPEM(c.ServerTLSCert.Raw),
		})
	}
	opts := o.EtcdRaft.Options
	tick, err := time.ParseDuration(opts.TickInterval)
	if err != nil && opts.TickInterval != "" {
		return OrdererConfig{}, fmt.Errorf("raft tick interval %q: %w", opts.TickInterval, err)
	}
	oc.Raft = RaftOptions{
		TickInterval:         tick,
		ElectionTick:         opts.ElectionTick,
		HeartbeatTick:        opts.HeartbeatTick,
		MaxInflightBlocks:    opts.MaxInflightBlocks,
		SnapshotIntervalSize: opts.SnapshotIntervalSize,
	}
	for _, org := range o.Organizations {
		oc.OrgEndpoints[org.MSP.Name] = append([]string(nil), org.OrdererEndpoints...)
		oc.Endpoints = append(oc.Endpoints, org.OrdererEndpoints...)
		for _, c := range org.MSP.TLSRootCerts {
			oc.TLSRootCerts = append(oc.TLSRootCerts, certPEM(c.Raw))
		}
	}
	return oc, nil
}

func applicationConfig(ctx configtx.ConfigTx) (ApplicationConfig, error) {
	a, err := ctx.Application().Configuration()
	if err != nil {
		return ApplicationConfig{}, err
	}
	ac := ApplicationConfig{ACLs: a.ACLs}
	for _, org := range a.Organizations {
		ao := AppOrg{Name: org.Name, MSPID: org.MSP.Name}
		// Configuration() leaves anchor peers out; they are read from the org group.
		anchors, err := ctx.Application().Organization(org.Name).AnchorPeers()
		if err != nil {
			return ApplicationConfig{}, fmt.Errorf("organisation %s anchor peers: %w", org.Name, err)
		}
		for _, p := range anchors {
			ao.AnchorPeers = append(ao.AnchorPeers, net.JoinHostPort(p.Host, strconv.Itoa(p.Port)))
		}
		for _, c := range org.MSP.TLSRootCerts {
			ao.TLSRootCerts = append(ao.TLSRootCerts, certPEM(c.Raw))
		}
		ac.Orgs = append(ac.Orgs, ao)
	}
	return ac, nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
