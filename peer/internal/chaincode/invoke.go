package chaincode

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

var errNoCallees = errors.New("chaincode-to-chaincode invocation is not available for this execution")

// calleeName splits the shim's target of InvokeChaincode, "name",
// "name/channel" or, from older shims, "name:version/channel", as Fabric's
// ParseName does. The version is ignored: a channel runs one definition.
func calleeName(target string) (name, channelID string) {
	name, channelID, _ = strings.Cut(target, "/")
	name, _, _ = strings.Cut(name, ":")
	return name, channelID
}

// invokeChaincode answers INVOKE_CHAINCODE as Fabric's HandleInvokeChaincode
// does: it runs the callee within the caller's transaction and returns the
// callee's final COMPLETED or ERROR message, marshalled, as the RESPONSE
// payload; the shim unwraps it into the caller's peer.Response.
//
// On the caller's channel the callee shares the caller's simulator, so its
// reads and writes land in its own namespace of the same read-write set. On
// another channel it runs against a separate simulator whose results are
// never committed; unlike Fabric, which silently drops such writes, writes
// there fail with ErrReadOnly so the chaincode cannot believe they happened.
//
// It runs with the caller's tx.mu held, which keeps the caller's other
// requests off the shared simulator until the callee has finished.
func invokeChaincode(s *Support, tx *txContext, payload []byte) ([]byte, error) {
	spec := &peer.ChaincodeSpec{}
	if err := decode(payload, spec); err != nil {
		return nil, err
	}
	name, channelID := calleeName(spec.GetChaincodeId().GetName())
	if name == "" {
		return nil, errors.New("no chaincode name to invoke")
	}
	if channelID == "" {
		channelID = tx.key.channelID
	}
	if tx.callees == nil {
		return nil, errNoCallees
	}
	depth := tx.depth + 1
	if depth > s.cfg.MaxCallDepth {
		return nil, fmt.Errorf("invoke %s on channel %s: chaincode-to-chaincode calls nested deeper than %d", name, channelID, s.cfg.MaxCallDepth)
	}
	pkgID, err := tx.callees.Resolve(tx.ctx, channelID, name)
	if err != nil {
		return nil, fmt.Errorf("invoke %s on channel %s: %w", name, channelID, err)
	}
	sim := tx.sim
	if channelID != tx.key.channelID {
		other, release, err := tx.callees.ChannelState(tx.ctx, channelID, tx.key.txID)
		if err != nil {
			return nil, fmt.Errorf("invoke %s on channel %s: %w", name, channelID, err)
		}
		defer release()
		sim = readOnly{sim: other, channelID: channelID}
	}
	reply, err := s.run(tx.ctx, Invocation{
		PackageID:      pkgID,
		Namespace:      name,
		ChannelID:      channelID,
		TxID:           tx.key.txID,
		SignedProposal: tx.proposal,
		Input:          spec.GetInput(),
		Callees:        tx.callees,
	}, sim, depth)
	if err != nil {
		return nil, fmt.Errorf("execute failed: %w", err)
	}
	return proto.Marshal(reply)
}

// readOnly is the view a callee on another channel gets of that channel.
type readOnly struct {
	sim       TxSimulator
	channelID string
}

func (r readOnly) refuse(op, ns, key string) error {
	return fmt.Errorf("%s %s/%q on channel %s: %w", op, ns, key, r.channelID, ErrReadOnly)
}

func (r readOnly) GetState(ns, key string) ([]byte, error) { return r.sim.GetState(ns, key) }

func (r readOnly) GetStateMultipleKeys(ns string, keys []string) ([][]byte, error) {
	return r.sim.GetStateMultipleKeys(ns, keys)
}

func (r readOnly) GetStateRangeScanIterator(ns, start, end string) (ResultsIterator, error) {
	return r.sim.GetStateRangeScanIterator(ns, start, end)
}

func (r readOnly) GetStateMetadata(ns, key string) (map[string][]byte, error) {
	return r.sim.GetStateMetadata(ns, key)
}

func (r readOnly) SetState(ns, key string, _ []byte) error { return r.refuse("put state", ns, key) }

func (r readOnly) DeleteState(ns, key string) error { return r.refuse("delete state", ns, key) }

func (r readOnly) SetStateMetadata(ns, key string, _ map[string][]byte) error {
	return r.refuse("put state metadata", ns, key)
}

// GetHistoryForKey keeps key history available when the wrapped simulator
// offers it.
func (r readOnly) GetHistoryForKey(ns, key string) (HistoryIterator, error) {
	hq, ok := r.sim.(HistoryQuerier)
	if !ok {
		return nil, errHistory
	}
	return hq.GetHistoryForKey(ns, key)
}

var _ HistoryQuerier = readOnly{}
