package validator

import (
	"bytes"
	"errors"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"google.golang.org/protobuf/proto"
)

// stateInput is one read the endorsement evaluation of a transaction made:
// a namespace's endorsement policy, or a key's validation parameter.
type stateInput struct {
	ns, key string
	policy  bool
	writes  []*kvrwset.KVWrite // policy: the writes it was resolved for
	spe     *cb.SignaturePolicyEnvelope
	ref     string
	vp      []byte
	err     error
}

// recorder passes the endorsement evaluation's reads through to state and
// policies and records them, in order. It belongs to one transaction and one
// goroutine.
type recorder struct {
	state    State
	policies Policies
	inputs   []stateInput
}

func (r *recorder) EndorsementPolicy(ns string, writes []*kvrwset.KVWrite) (*cb.SignaturePolicyEnvelope, string, error) {
	spe, ref, err := r.policies.EndorsementPolicy(ns, writes)
	r.inputs = append(r.inputs, stateInput{ns: ns, policy: true, writes: writes, spe: spe, ref: ref, err: err})
	return spe, ref, err
}

func (r *recorder) GetStateMetadata(ns, key string) (map[string][]byte, error) {
	md, err := r.state.GetStateMetadata(ns, key)
	r.inputs = append(r.inputs, stateInput{ns: ns, key: key, vp: md[ValidationParameterKey], err: err})
	return md, err
}

// inputsHold reports whether every recorded read gives the same answer from
// state and policies now. The evaluation is a deterministic function of the
// transaction, the bundle and these reads (each read chosen by the answers
// before it), so if they all hold its outcome holds.
func inputsHold(inputs []stateInput, state State, policies Policies) bool {
	for _, in := range inputs {
		if in.policy {
			spe, ref, err := policies.EndorsementPolicy(in.ns, in.writes)
			if !sameErr(err, in.err) || ref != in.ref || !proto.Equal(spe, in.spe) {
				return false
			}
			continue
		}
		md, err := state.GetStateMetadata(in.ns, in.key)
		if !sameErr(err, in.err) || !bytes.Equal(md[ValidationParameterKey], in.vp) {
			return false
		}
	}
	return true
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Error() == b.Error() && errors.Is(a, ErrUndefined) == errors.Is(b, ErrUndefined)
}
