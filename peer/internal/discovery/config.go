package discovery

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	dpb "github.com/hyperledger/fabric-protos-go-apiv2/discovery"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
)

// Configuration tree keys Fabric's discovery service reads.
const (
	ordererGroup     = "Orderer"
	applicationGroup = "Application"
	mspKey           = "MSP"
	endpointsKey     = "Endpoints"
	ordererAddrsKey  = "OrdererAddresses"
	fabricMSPType    = 0 // msp.FABRIC; idemix MSPs carry nothing a client can use
)

// config answers a ConfigQuery from the channel's configuration in force.
func (s *Service) config(b *channelconfig.Bundle) *dpb.QueryResult {
	res, err := ConfigResult(b.Config())
	if err != nil {
		s.log.Error("discovery config query", "channel", b.ChannelID(), "error", err)
		return errorResult(fmt.Sprintf("failed fetching config for channel %s", b.ChannelID()))
	}
	return &dpb.QueryResult{Result: &dpb.QueryResult_ConfigResult{ConfigResult: res}}
}

// ConfigResult extracts what a discovery client needs of a channel
// configuration, as Fabric does: the FabricMSPConfig of every orderer and
// application organisation, by MSP ID, as the configuration holds it; and
// each orderer organisation's endpoints — its own Endpoints value when any
// orderer organisation has one, else the channel-wide OrdererAddresses.
func ConfigResult(c *cb.Config) (*dpb.ConfigResult, error) {
	root := c.GetChannelGroup()
	if root == nil {
		return nil, errors.New("config has no channel group")
	}
	for _, k := range []string{ordererGroup, applicationGroup} {
		if root.GetGroups()[k] == nil {
			return nil, fmt.Errorf("config has no %s group", k)
		}
	}
	orderers := root.GetGroups()[ordererGroup].GetGroups()
	res := &dpb.ConfigResult{Msps: map[string]*mspproto.FabricMSPConfig{}, Orderers: map[string]*dpb.Endpoints{}}

	perOrg := map[string][]string{}
	anyPerOrg := false
	for name, g := range orderers {
		fc, ok, err := fabricMSP(g)
		if err != nil {
			return nil, fmt.Errorf("orderer organisation %s: %w", name, err)
		}
		if !ok {
			continue
		}
		perOrg[fc.GetName()] = nil
		if v := g.GetValues()[endpointsKey]; v != nil {
			addrs := &cb.OrdererAddresses{}
			if err := proto.Unmarshal(v.GetValue(), addrs); err != nil {
				return nil, fmt.Errorf("orderer organisation %s endpoints: %w", name, err)
			}
			perOrg[fc.GetName()] = addrs.GetAddresses()
			anyPerOrg = anyPerOrg || len(addrs.GetAddresses()) > 0
		}
	}
	if anyPerOrg {
		for id, addrs := range perOrg {
			eps := &dpb.Endpoints{}
			for _, a := range addrs {
				ep, err := endpoint(a)
				if err != nil {
					continue // as Fabric: a malformed per-organisation endpoint is skipped
				}
				eps.Endpoint = append(eps.Endpoint, ep)
			}
			res.Orderers[id] = eps
		}
	} else {
		var global []string
		if v := root.GetValues()[ordererAddrsKey]; v != nil {
			addrs := &cb.OrdererAddresses{}
			if err := proto.Unmarshal(v.GetValue(), addrs); err != nil {
				return nil, fmt.Errorf("orderer addresses: %w", err)
			}
			global = addrs.GetAddresses()
		}
		for id := range perOrg {
			eps := &dpb.Endpoints{}
			for _, a := range global {
				ep, err := endpoint(a)
				if err != nil {
					return nil, err
				}
				eps.Endpoint = append(eps.Endpoint, ep)
			}
			res.Orderers[id] = eps
		}
	}

	for _, groups := range []map[string]*cb.ConfigGroup{orderers, root.GetGroups()[applicationGroup].GetGroups()} {
		for name, g := range groups {
			fc, ok, err := fabricMSP(g)
			if err != nil {
				return nil, fmt.Errorf("organisation %s: %w", name, err)
			}
			if !ok {
				continue
			}
			if _, dup := res.Msps[fc.GetName()]; !dup {
				res.Msps[fc.GetName()] = fc
			}
		}
	}
	return res, nil
}

// fabricMSP decodes an organisation group's MSP; false for a non-Fabric MSP.
func fabricMSP(g *cb.ConfigGroup) (*mspproto.FabricMSPConfig, bool, error) {
	v := g.GetValues()[mspKey]
	if v == nil {
		return nil, false, errors.New("no MSP")
	}
	mc := &mspproto.MSPConfig{}
	if err := proto.Unmarshal(v.GetValue(), mc); err != nil {
		return nil, false, fmt.Errorf("MSP config: %w", err)
	}
	if mc.GetType() != fabricMSPType {
		return nil, false, nil
	}
	fc := &mspproto.FabricMSPConfig{}
	if err := proto.Unmarshal(mc.GetConfig(), fc); err != nil {
		return nil, false, fmt.Errorf("fabric MSP config: %w", err)
	}
	return fc, true, nil
}

func endpoint(addr string) (*dpb.Endpoint, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("failed parsing orderer endpoint %s", addr)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid port number", portStr)
	}
	return &dpb.Endpoint{Host: host, Port: uint32(port)}, nil
}
