package channelconfig

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/hyperledger/fabric-config/configtx"
	"github.com/hyperledger/fabric-config/configtx/membership"
	"github.com/hyperledger/fabric-config/configtx/orderer"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// Capability is the only capability level Cairn writes and accepts: Fabric 2.x.
const Capability = "V2_0"

// Genesis builds the genesis config block of net.Channel with fabric-config: the
// application organisations (MSPs from the crypto material under cryptoDir,
// anchor peers = each organisation's first peer), the orderer organisations and
// their endpoints, EtcdRaft consenters with their TLS certificates, the batch
// parameters, the policies Fabric's test network uses and capabilities V2_0.
func Genesis(net *netconfig.Network, cryptoDir string) (*cb.Block, error) {
	layout := cryptogen.Layout{Root: cryptoDir}
	ch := net.Channel

	var appOrgs []configtx.Organization
	for _, o := range net.PeerOrgs {
		m, err := orgMSP(layout, true, o.MSPID, o.Domain)
		if err != nil {
			return nil, err
		}
		org := configtx.Organization{
			Name: o.MSPID,
			MSP:  m,
			Policies: map[string]configtx.Policy{
				configtx.ReadersPolicyKey:     sig(fmt.Sprintf("OR('%[1]s.admin', '%[1]s.peer', '%[1]s.client')", o.MSPID)),
				configtx.WritersPolicyKey:     sig(fmt.Sprintf("OR('%[1]s.admin', '%[1]s.client')", o.MSPID)),
				configtx.AdminsPolicyKey:      sig(fmt.Sprintf("OR('%s.admin')", o.MSPID)),
				configtx.EndorsementPolicyKey: sig(fmt.Sprintf("OR('%s.peer')", o.MSPID)),
			},
		}
		if len(o.Peers) > 0 {
			org.AnchorPeers = []configtx.Address{{Host: o.Peers[0].Host, Port: o.Peers[0].Port}}
		}
		appOrgs = append(appOrgs, org)
	}

	var ordOrgs []configtx.Organization
	var consenters []orderer.Consenter
	for _, o := range net.OrdererOrgs {
		m, err := orgMSP(layout, false, o.MSPID, o.Domain)
		if err != nil {
			return nil, err
		}
		org := configtx.Organization{
			Name: o.MSPID,
			MSP:  m,
			Policies: map[string]configtx.Policy{
				configtx.ReadersPolicyKey: sig(fmt.Sprintf("OR('%s.member')", o.MSPID)),
				configtx.WritersPolicyKey: sig(fmt.Sprintf("OR('%s.member')", o.MSPID)),
				configtx.AdminsPolicyKey:  sig(fmt.Sprintf("OR('%s.admin')", o.MSPID)),
			},
		}
		for _, n := range o.Orderers {
			org.OrdererEndpoints = append(org.OrdererEndpoints, n.Address())
			full := n.FullName(o.Domain)
			cert, err := readCert(layout.NodeTLSCertPath(false, o.Domain, full))
			if err != nil {
				return nil, fmt.Errorf("consenter %s: %w", full, err)
			}
			port := n.ClusterPort
			if port == 0 {
				port = n.Port
			}
			consenters = append(consenters, orderer.Consenter{
				Address:       orderer.EtcdAddress{Host: n.Host, Port: port},
				ClientTLSCert: cert,
				ServerTLSCert: cert,
			})
		}
		ordOrgs = append(ordOrgs, org)
	}

	r := ch.Raft
	channel := configtx.Channel{
		Capabilities: []string{Capability},
		Policies:     standardPolicies(false),
		Application: configtx.Application{
			Organizations: appOrgs,
			Capabilities:  []string{Capability},
			Policies: func() map[string]configtx.Policy {
				p := standardPolicies(false)
				p[configtx.EndorsementPolicyKey] = meta("MAJORITY Endorsement")
				p[configtx.LifecycleEndorsementPolicyKey] = meta("MAJORITY Endorsement")
				return p
			}(),
			ACLs: DefaultACLs(),
		},
		Orderer: configtx.Orderer{
			OrdererType:  orderer.ConsensusTypeEtcdRaft,
			BatchTimeout: ch.BatchTimeout.D(),
			BatchSize: orderer.BatchSize{
				MaxMessageCount:   ch.BatchSize.MaxMessageCount,
				AbsoluteMaxBytes:  uint32(ch.BatchSize.AbsoluteMaxBytes),
				PreferredMaxBytes: uint32(ch.BatchSize.PreferredMaxBytes),
			},
			EtcdRaft: orderer.EtcdRaft{
				Consenters: consenters,
				Options: orderer.EtcdRaftOptions{
					TickInterval:         r.TickInterval.D().String(),
					ElectionTick:         r.ElectionTick,
					HeartbeatTick:        r.HeartbeatTick,
					MaxInflightBlocks:    r.MaxInflightBlocks,
					SnapshotIntervalSize: uint32(r.SnapshotIntervalSize),
				},
			},
			Organizations: ordOrgs,
			Capabilities:  []string{Capability},
			Policies: func() map[string]configtx.Policy {
				p := standardPolicies(false)
				p[configtx.BlockValidationPolicyKey] = meta("ANY Writers")
				return p
			}(),
			State: orderer.ConsensusStateNormal,
		},
	}
	gb, err := configtx.NewApplicationChannelGenesisBlock(channel, ch.Name)
	if err != nil {
		return nil, fmt.Errorf("build genesis block of channel %s: %w", ch.Name, err)
	}
	if err := addAnchorPeers(gb, appOrgs); err != nil {
		return nil, fmt.Errorf("genesis block of channel %s: %w", ch.Name, err)
	}
	return gb, nil
}

// addAnchorPeers writes the organisations' anchor peers into a genesis block.
// fabric-config's genesis builder leaves them out (as configtxgen does, which
// makes Fabric operators send an anchor-peer update per organisation); Cairn
// writes them at once, so peers can find each other from block 0.
func addAnchorPeers(gb *cb.Block, orgs []configtx.Organization) error {
	env := &cb.Envelope{}
	if err := proto.Unmarshal(gb.Data.Data[0], env); err != nil {
		return err
	}
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		return err
	}
	ce := &cb.ConfigEnvelope{}
	if err := proto.Unmarshal(payload.Data, ce); err != nil {
		return err
	}
	ctx := configtx.New(ce.Config)
	for _, org := range orgs {
		for _, a := range org.AnchorPeers {
			if err := ctx.Application().Organization(org.Name).AddAnchorPeer(a); err != nil {
				return fmt.Errorf("anchor peer of %s: %w", org.Name, err)
			}
		}
	}
	ce.Config = ctx.UpdatedConfig()
	var err error
	if payload.Data, err = proto.Marshal(ce); err != nil {
		return err
	}
	if env.Payload, err = proto.Marshal(payload); err != nil {
		return err
	}
	if gb.Data.Data[0], err = proto.Marshal(env); err != nil {
		return err
	}
	gb.Header.DataHash = block.DataHash(gb.Data)
	return nil
}

// DefaultACLs maps Fabric's resource names to channel policies as Fabric's
// sample configtx.yaml does.
func DefaultACLs() map[string]string {
	return map[string]string{
		"_lifecycle/CheckCommitReadiness":      "/Channel/Application/Writers",
		"_lifecycle/CommitChaincodeDefinition": "/Channel/Application/Writers",
		"_lifecycle/QueryChaincodeDefinition":  "/Channel/Application/Writers",
		"_lifecycle/QueryChaincodeDefinitions": "/Channel/Application/Writers",
		"lscc/ChaincodeExists":                 "/Channel/Application/Readers",
		"lscc/GetDeploymentSpec":               "/Channel/Application/Readers",
		"lscc/GetChaincodeData":                "/Channel/Application/Readers",
		"lscc/GetInstantiatedChaincodes":       "/Channel/Application/Readers",
		"qscc/GetChainInfo":                    "/Channel/Application/Readers",
		"qscc/GetBlockByNumber":                "/Channel/Application/Readers",
		"qscc/GetBlockByHash":                  "/Channel/Application/Readers",
		"qscc/GetTransactionByID":              "/Channel/Application/Readers",
		"qscc/GetBlockByTxID":                  "/Channel/Application/Readers",
		"cscc/GetConfigBlock":                  "/Channel/Application/Readers",
		"cscc/GetChannelConfig":                "/Channel/Application/Readers",
		"peer/Propose":                         "/Channel/Application/Writers",
		"peer/ChaincodeToChaincode":            "/Channel/Application/Writers",
		"event/Block":                          "/Channel/Application/Readers",
		"event/FilteredBlock":                  "/Channel/Application/Readers",
	}
}

func standardPolicies(_ bool) map[string]configtx.Policy {
	return map[string]configtx.Policy{
		configtx.ReadersPolicyKey: meta("ANY Readers"),
		configtx.WritersPolicyKey: meta("ANY Writers"),
		configtx.AdminsPolicyKey:  meta("MAJORITY Admins"),
	}
}

func sig(rule string) configtx.Policy {
	return configtx.Policy{Type: configtx.SignaturePolicyType, Rule: rule}
}

func meta(rule string) configtx.Policy {
	return configtx.Policy{Type: configtx.ImplicitMetaPolicyType, Rule: rule}
}

// orgMSP reads an organisation's verifying MSP folder (cacerts, tlscacerts,
// intermediatecerts, NodeOUs) into fabric-config's form.
func orgMSP(layout cryptogen.Layout, peerOrg bool, mspID, domain string) (configtx.MSP, error) {
	dir := layout.OrgMSPDir(peerOrg, domain)
	roots, err := readCertDir(filepath.Join(dir, "cacerts"))
	if err != nil {
		return configtx.MSP{}, fmt.Errorf("MSP %s: %w", mspID, err)
	}
	if len(roots) == 0 {
		return configtx.MSP{}, fmt.Errorf("MSP %s: no CA certificate in %s/cacerts", mspID, dir)
	}
	tlsRoots, err := readCertDir(filepath.Join(dir, "tlscacerts"))
	if err != nil {
		return configtx.MSP{}, fmt.Errorf("MSP %s: %w", mspID, err)
	}
	inter, err := readCertDir(filepath.Join(dir, "intermediatecerts"))
	if err != nil {
		return configtx.MSP{}, fmt.Errorf("MSP %s: %w", mspID, err)
	}
	ou := func(name string) membership.OUIdentifier {
		return membership.OUIdentifier{Certificate: roots[0], OrganizationalUnitIdentifier: name}
	}
	return configtx.MSP{
		Name:              mspID,
		RootCerts:         roots,
		IntermediateCerts: inter,
		TLSRootCerts:      tlsRoots,
		NodeOUs: membership.NodeOUs{
			Enable:              true,
			ClientOUIdentifier:  ou("client"),
			PeerOUIdentifier:    ou("peer"),
			AdminOUIdentifier:   ou("admin"),
			OrdererOUIdentifier: ou("orderer"),
		},
		CryptoConfig: membership.CryptoConfig{
			SignatureHashFamily:            "SHA2",
			IdentityIdentifierHashFunction: "SHA256",
		},
	}, nil
}

func readCert(path string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	blk, _ := pem.Decode(raw)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate %s: %w", path, err)
	}
	return c, nil
}

// readCertDir reads every certificate in a folder, in name order; a missing
// folder has none.
func readCertDir(dir string) ([]*x509.Certificate, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []*x509.Certificate
	for _, n := range names {
		c, err := readCert(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
