package configtx

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	ordererpb "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
)

// Config group and value names (Fabric's).
const (
	ordererGroup      = "Orderer"
	applicationGroup  = "Application"
	capabilitiesValue = "Capabilities"
	consensusValue    = "ConsensusType"
	mspValue          = "MSP"
)

// supportedCapabilities lists, per section, the Fabric 2.5 capability levels
// whose behaviour Cairn implements (earlier levels are subsumed by V2_0). A
// configuration asking for any other is refused, as a Fabric 2.5 orderer
// refuses V3_0.
func supportedCapabilities(section string) []string {
	switch section {
	case "channel":
		return []string{"V1_1", "V1_3", "V1_4_2", "V1_4_3", "V2_0"}
	case "orderer":
		return []string{"V1_1", "V1_4_2", "V2_0"}
	default:
		return []string{"V1_1", "V1_2", "V1_3", "V1_4_2", "V2_0", "V2_5"}
	}
}

// ValidateNew checks that next may follow current on an ordering service, as
// Fabric's Bundle.ValidateNew and its etcdraft and orderer config checks do:
// sections are not dropped, the consensus type does not change and stays in
// normal state (Cairn has no maintenance mode), the channel still has orderer
// organisations and consenters, at most one consenter is added or removed
// (ConsenterChange), the Raft options and batch parameters are usable, every
// capability is one Cairn supports and the channel keeps V2_0, and no
// organisation changes its MSP ID. Errors match ErrInvalidConfig.
func ValidateNew(current, next *channelconfig.Bundle) error {
	if err := validateNew(current, next); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func validateNew(current, next *channelconfig.Bundle) error {
	if current == nil || next == nil {
		return errors.New("missing configuration")
	}
	cur, nxt := current.Config().GetChannelGroup(), next.Config().GetChannelGroup()
	if err := checkCapabilities("channel", nxt, channelconfig.Capability); err != nil {
		return err
	}
	if curOrd := cur.GetGroups()[ordererGroup]; curOrd != nil {
		nxtOrd := nxt.GetGroups()[ordererGroup]
		if nxtOrd == nil {
			return errors.New("the current configuration has an orderer section, the new one does not")
		}
		if err := checkOrderer(current, next, curOrd, nxtOrd); err != nil {
			return err
		}
	}
	if curApp := cur.GetGroups()[applicationGroup]; curApp != nil {
		nxtApp := nxt.GetGroups()[applicationGroup]
		if nxtApp == nil {
			return errors.New("the current configuration has an application section, the new one does not")
		}
		if err := checkCapabilities("application", nxtApp, ""); err != nil {
			return err
		}
		if err := checkMSPIDs("application", curApp, nxtApp); err != nil {
			return err
		}
	}
	return nil
}

func checkOrderer(current, next *channelconfig.Bundle, curOrd, nxtOrd *cb.ConfigGroup) error {
	if err := checkCapabilities("orderer", nxtOrd, ""); err != nil {
		return err
	}
	curType, err := consensusType(curOrd)
	if err != nil {
		return fmt.Errorf("current configuration: %w", err)
	}
	nxtType, err := consensusType(nxtOrd)
	if err != nil {
		return err
	}
	if curType.Type != nxtType.Type {
		return fmt.Errorf("attempted to change consensus type from %s to %s", curType.Type, nxtType.Type)
	}
	if nxtType.State != ordererpb.ConsensusType_STATE_NORMAL {
		return fmt.Errorf("consensus state %s is not supported: Cairn has no maintenance mode or consensus-type migration", nxtType.State)
	}
	if len(nxtOrd.Groups) == 0 {
		return errors.New("the new configuration has no orderer organisation")
	}
	if err := checkMSPIDs("orderer", curOrd, nxtOrd); err != nil {
		return err
	}
	o := next.Orderer()
	if len(o.Consenters) == 0 {
		return errors.New("the new configuration has no consenters")
	}
	if err := checkConsenters(o.Consenters); err != nil {
		return err
	}
	if _, _, err := ConsenterChange(current, next); err != nil {
		return err
	}
	r := o.Raft
	if r.TickInterval <= 0 || r.ElectionTick == 0 || r.HeartbeatTick == 0 {
		return fmt.Errorf("none of HeartbeatTick (%d), ElectionTick (%d) and TickInterval (%s) can be zero",
			r.HeartbeatTick, r.ElectionTick, r.TickInterval)
	}
	if r.ElectionTick <= r.HeartbeatTick {
		return fmt.Errorf("ElectionTick (%d) must be greater than HeartbeatTick (%d)", r.ElectionTick, r.HeartbeatTick)
	}
	switch {
	case o.MaxMessageCount == 0:
		return errors.New("batch size: MaxMessageCount must be greater than 0")
	case o.AbsoluteMaxBytes == 0:
		return errors.New("batch size: AbsoluteMaxBytes must be greater than 0")
	case o.PreferredMaxBytes == 0:
		return errors.New("batch size: PreferredMaxBytes must be greater than 0")
	case o.PreferredMaxBytes > o.AbsoluteMaxBytes:
		return fmt.Errorf("batch size: PreferredMaxBytes (%d) must not exceed AbsoluteMaxBytes (%d)", o.PreferredMaxBytes, o.AbsoluteMaxBytes)
	case o.BatchTimeout <= 0:
		return fmt.Errorf("batch timeout %s must be positive", o.BatchTimeout)
	}
	return nil
}

func consensusType(ord *cb.ConfigGroup) (*ordererpb.ConsensusType, error) {
	v := ord.GetValues()[consensusValue]
	if v == nil {
		return nil, errors.New("orderer section has no ConsensusType")
	}
	ct := &ordererpb.ConsensusType{}
	if err := proto.Unmarshal(v.Value, ct); err != nil {
		return nil, fmt.Errorf("orderer ConsensusType: %w", err)
	}
	return ct, nil
}

// checkCapabilities refuses capabilities outside supported and, when required
// is set, a configuration without it.
func checkCapabilities(section string, g *cb.ConfigGroup, required string) error {
	supported := supportedCapabilities(section)
	caps, err := capabilities(g)
	if err != nil {
		return fmt.Errorf("%s capabilities: %w", section, err)
	}
	for _, c := range caps {
		if !contains(supported, c) {
			return fmt.Errorf("%s capability %s is required but not supported (supported: %s)", section, c, strings.Join(supported, ", "))
		}
	}
	if required != "" && !contains(caps, required) {
		return fmt.Errorf("%s capability %s is required by Cairn but the new configuration does not enable it", section, required)
	}
	return nil
}

func capabilities(g *cb.ConfigGroup) ([]string, error) {
	v := g.GetValues()[capabilitiesValue]
	if v == nil {
		return nil, nil
	}
	c := &cb.Capabilities{}
	if err := proto.Unmarshal(v.Value, c); err != nil {
		return nil, err
	}
	return sortedKeys(c.Capabilities), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkMSPIDs refuses an organisation keeping its name but changing its MSP ID.
func checkMSPIDs(section string, cur, nxt *cb.ConfigGroup) error {
	for _, name := range sortedKeys(cur.Groups) {
		ng := nxt.Groups[name]
		if ng == nil {
			continue
		}
		was, err := mspID(cur.Groups[name])
		if err != nil {
			return fmt.Errorf("current %s organisation %s: %w", section, name, err)
		}
		is, err := mspID(ng)
		if err != nil {
			return fmt.Errorf("%s organisation %s: %w", section, name, err)
		}
		if was != is {
			return fmt.Errorf("%s organisation %s attempted to change MSP ID from %s to %s", section, name, was, is)
		}
	}
	return nil
}

func mspID(org *cb.ConfigGroup) (string, error) {
	v := org.GetValues()[mspValue]
	if v == nil {
		return "", errors.New("no MSP")
	}
	mc := &mspproto.MSPConfig{}
	if err := proto.Unmarshal(v.Value, mc); err != nil {
		return "", fmt.Errorf("MSP: %w", err)
	}
	fc := &mspproto.FabricMSPConfig{}
	if err := proto.Unmarshal(mc.Config, fc); err != nil {
		return "", fmt.Errorf("MSP: %w", err)
	}
	return fc.Name, nil
}

// checkConsenters refuses consenters without TLS certificates and two
// consenters sharing a TLS certificate (Fabric's MetadataHasDuplication).
func checkConsenters(cs []channelconfig.Consenter) error {
	certs := map[string]int{}
	for i, c := range cs {
		if len(bytes.TrimSpace(c.ClientTLSCert)) == 0 || len(bytes.TrimSpace(c.ServerTLSCert)) == 0 {
			return fmt.Errorf("consenter %s:%d lacks a TLS certificate", c.Host, c.Port)
		}
		for _, cert := range [][]byte{c.ClientTLSCert, c.ServerTLSCert} {
			k := string(bytes.TrimSpace(cert))
			if j, dup := certs[k]; dup && j != i {
				return fmt.Errorf("consenters %s:%d and %s:%d share a TLS certificate", cs[j].Host, cs[j].Port, c.Host, c.Port)
			}
			certs[k] = i
		}
	}
	return nil
}

// ConsenterChange compares the Raft consenters of two configurations and
// returns those added and those removed. A consenter is its endpoint and both
// TLS certificates; changing any of them removes one consenter and adds
// another. As in Fabric's etcdraft, at most one consenter may be added and at
// most one removed per update (one of each is a certificate or endpoint
// rotation); anything more is an error, returned with the lists.
func ConsenterChange(old, new *channelconfig.Bundle) (added, removed []channelconfig.Consenter, err error) {
	if old == nil || new == nil {
		return nil, nil, errors.New("consenter change: missing configuration")
	}
	before, after := old.Orderer().Consenters, new.Orderer().Consenters
	in := func(c channelconfig.Consenter, set []channelconfig.Consenter) bool {
		for _, x := range set {
			if sameConsenter(c, x) {
				return true
			}
		}
		return false
	}
	for _, c := range after {
		if !in(c, before) {
			added = append(added, c)
		}
	}
	for _, c := range before {
		if !in(c, after) {
			removed = append(removed, c)
		}
	}
	if len(added) > 1 || len(removed) > 1 {
		return added, removed, fmt.Errorf("update of more than one consenter at a time is not supported, requested changes: add %d node(s) [%s], remove %d node(s) [%s]",
			len(added), endpoints(added), len(removed), endpoints(removed))
	}
	return added, removed, nil
}

func sameConsenter(a, b channelconfig.Consenter) bool {
	return a.Host == b.Host && a.Port == b.Port &&
		bytes.Equal(bytes.TrimSpace(a.ClientTLSCert), bytes.TrimSpace(b.ClientTLSCert)) &&
		bytes.Equal(bytes.TrimSpace(a.ServerTLSCert), bytes.TrimSpace(b.ServerTLSCert))
}

func endpoints(cs []channelconfig.Consenter) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s:%d", c.Host, c.Port)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
