package endorser

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/chaincode"
)

// callees resolves the chaincode-to-chaincode calls of one proposal for the
// chaincode runtime (chaincode.Callees) and remembers which chaincodes on the
// proposal's channel were called, for the response's ChaincodeInterest.
type callees struct {
	e         *Endorser
	channel   Channel
	channelID string
	signed    []policy.SignedData // the proposal's signature, for ACL checks

	mu    sync.Mutex
	names []string // in call order, without duplicates
}

var _ chaincode.Callees = (*callees)(nil)

// Resolve follows Fabric's HandleInvokeChaincode: system chaincodes cannot be
// called from chaincode, the proposal's signer must satisfy the target
// channel's peer/ChaincodeToChaincode ACL, and the callee must be defined on
// the target channel.
func (c *callees) Resolve(_ context.Context, channelID, name string) (string, error) {
	if _, ok := c.e.cfg.System[name]; ok {
		return "", fmt.Errorf("system chaincode %s cannot be invoked with a cc2cc invocation", name)
	}
	ch, err := c.target(channelID)
	if err != nil {
		return "", err
	}
	if err := CheckACL(ch.Bundle(), "peer/ChaincodeToChaincode", "/Channel/Application/Writers", c.signed); err != nil {
		return "", err
	}
	pkgID, err := ch.ChaincodePackageID(name)
	if err != nil {
		return "", fmt.Errorf("make sure the chaincode %s has been successfully defined on channel %s and try again: %w", name, channelID, err)
	}
	if channelID == c.channelID {
		// A callee on another channel is not part of this transaction's
		// endorsement: nothing it does is committed.
		c.mu.Lock()
		if !slices.Contains(c.names, name) {
			c.names = append(c.names, name)
		}
		c.mu.Unlock()
	}
	return pkgID, nil
}

// ChannelState opens a simulation on another channel, as Fabric does; the
// chaincode runtime refuses writes through it and its results are dropped.
func (c *callees) ChannelState(_ context.Context, channelID, txID string) (chaincode.TxSimulator, func(), error) {
	ch, err := c.target(channelID)
	if err != nil {
		return nil, nil, err
	}
	sim, err := ch.NewTxSimulator(txID)
	if err != nil {
		return nil, nil, fmt.Errorf("simulate on channel %s: %w", channelID, err)
	}
	return simulator{sim}, sim.Done, nil
}

func (c *callees) target(channelID string) (Channel, error) {
	if channelID == c.channelID {
		return c.channel, nil
	}
	ch, ok := c.e.cfg.Channels.Channel(channelID)
	if !ok {
		return nil, fmt.Errorf("failed to find ledger for channel: %s", channelID)
	}
	return ch, nil
}

// called returns the chaincodes called on the proposal's channel; nil-safe.
func (c *callees) called() []string {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.names)
}
