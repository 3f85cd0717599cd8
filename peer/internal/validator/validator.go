// Package validator owns the committing peer's transaction checks before MVCC:
// for each envelope of a block it decides the Fabric validation code — envelope
// and header shape, channel, creator signature and MSP, tx ID derivation,
// duplicate tx IDs (in the ledger and earlier in the block) and the endorsement
// policy of the invoked chaincode and of every namespace the transaction
// writes, with Fabric's key-level (state-based) endorsement: a key whose
// committed metadata holds a VALIDATION_PARAMETER is endorsed per that policy.
// docs/validation-codes.md maps every code to its check. MVCC and commit
// belong to the ledger. Signature work is spread over a bounded pool of goroutines that
// live only for one Validate call.
package validator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// Ledger is what validation reads of the channel's committed ledger: the
// block store's tx ID index and the committed state the block is validated
// against (a snapshot that does not move during one Validate call).
type Ledger interface {
	TxIDExists(txID string) (bool, error)
	// GetStateMetadata returns the committed metadata of a key, nil if the
	// key or its metadata does not exist. Its VALIDATION_PARAMETER entry is
	// the key-level endorsement policy.
	GetStateMetadata(ns, key string) (map[string][]byte, error)
}

// Policies resolves the endorsement policy a namespace's writes must satisfy,
// from the committed chaincode definitions (the _lifecycle namespace).
type Policies interface {
	// EndorsementPolicy returns the policy for writes to namespace ns: a
	// signature policy, or the path of a channel policy. The writes are passed
	// so that _lifecycle can pick a per-organisation policy for approvals.
	EndorsementPolicy(ns string, writes []*kvrwset.KVWrite) (spe *cb.SignaturePolicyEnvelope, ref string, err error)
}

// ValidationParameterKey is the key-metadata entry holding a key-level
// endorsement policy: a marshalled common.SignaturePolicyEnvelope, as the
// shim's SetStateValidationParameter writes it (peer.MetaDataKeys_VALIDATION_PARAMETER).
const ValidationParameterKey = "VALIDATION_PARAMETER"

// errLedger marks a result that could not be decided because the ledger
// could not be read; Validate turns it into an error for the whole block.
var errLedger = errors.New("ledger unavailable")

// ErrUndefined is returned by Policies for a namespace with no committed definition.
var ErrUndefined = errors.New("chaincode is not defined on the channel")

// Config configures a Validator.
type Config struct {
	Logger *slog.Logger
	// Workers bounds concurrent signature checks; 0 means one per CPU.
	Workers int
}

// Validator checks blocks for one channel at a time; it holds no state between
// calls and may be shared.
type Validator struct {
	log     *slog.Logger
	workers int
}

// New returns a Validator.
func New(cfg Config) *Validator {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	return &Validator{log: cfg.Logger, workers: cfg.Workers}
}

// Result is one transaction's outcome.
type Result struct {
	Code  pb.TxValidationCode
	TxID  string
	Error error // why the code is not VALID, for logs
}

// Validate returns one result per envelope of b. The bundle is the channel's
// configuration in force for b; ledger is the committed ledger b is validated
// against; policies resolves chaincode endorsement policies against committed
// state. A returned error means the block could not be validated at all
// (context cancelled, ledger unreadable).
func (v *Validator) Validate(ctx context.Context, b *cb.Block, bundle *channelconfig.Bundle, ledger Ledger, policies Policies) ([]Result, error) {
	n := len(b.GetData().GetData())
	results := make([]Result, n)
	if block.IsConfig(b) {
		// A config block carries exactly one CONFIG envelope, produced and signed
		// by the ordering service; the block signature already vouches for it.
		results[0] = Result{Code: pb.TxValidationCode_VALID}
		if ch, err := block.ChannelHeader(b, 0); err == nil {
			results[0].TxID = ch.TxId
		}
		return results, nil
	}

	touched := make([]txKeys, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	workers := min(v.workers, n)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				results[i], touched[i] = v.checkTx(b, i, bundle, ledger, policies)
			}
		}()
	}
	var cancelled error
	for i := 0; i < n; i++ {
		if cancelled = ctx.Err(); cancelled != nil {
			break
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
			cancelled = ctx.Err()
		}
		if cancelled != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if cancelled != nil {
		return nil, fmt.Errorf("validate block %d: %w", b.Header.Number, cancelled)
	}

	for _, r := range results {
		if errors.Is(r.Error, errLedger) {
			return nil, fmt.Errorf("validate block %d: %w", b.Header.Number, r.Error)
		}
	}
	applyKeyLevelDependencies(b.Header.Number, results, touched)
	// Within the block the first VALID occurrence of a tx ID wins; as in
	// Fabric, invalid transactions claim nothing, so a forged copy placed
	// ahead of a genuine transaction cannot knock it out.
	seen := make(map[string]bool, n)
	for i := range results {
		r := &results[i]
		if r.Code != pb.TxValidationCode_VALID {
			continue
		}
		if seen[r.TxID] {
			r.Code, r.Error = pb.TxValidationCode_DUPLICATE_TXID, fmt.Errorf("tx ID %s appears earlier in block %d", r.TxID, b.Header.Number)
			continue
		}
		seen[r.TxID] = true
	}
	for i, r := range results {
		if r.Code != pb.TxValidationCode_VALID {
			v.log.Warn("transaction invalid", "channel", bundle.ChannelID(), "block", b.Header.Number, "tx.index", i, "tx.id", r.TxID, "code", r.Code.String(), "reason", errString(r.Error))
		}
	}
	return results, nil
}

// nsKey is one key of one namespace.
type nsKey struct{ ns, key string }

// txKeys are the keys a transaction that passed checkTx writes (values or
// metadata) and, among them, those whose metadata it writes.
type txKeys struct {
	written  []nsKey
	metadata []nsKey
}

// applyKeyLevelDependencies is Fabric's in-block rule for key-level
// endorsement (core/common/validation/statebased, vpmanagerimpl.go): checkTx
// evaluated every key against its committed validation parameter, but an
// earlier transaction of the same block that passed validation may have
// rewritten a key's metadata, so the committed parameter is stale. Fabric
// does not re-evaluate against the new parameter (it is not committed yet):
// a later transaction writing such a key is invalidated with
// ENDORSEMENT_POLICY_FAILURE (ValidationParameterUpdatedError). As in Fabric,
// the earlier transaction counts once its endorsement checks pass, whatever
// MVCC or in-block duplicate detection later decide for it. (Fabric tracks this
// per namespace; Cairn uses the whole transaction's pre-MVCC result, which
// differs only for a transaction that passes one namespace's policy and fails
// another's.)
func applyKeyLevelDependencies(blockNum uint64, results []Result, touched []txKeys) {
	var updatedBy map[nsKey]int
	for i := range results {
		r := &results[i]
		if r.Code != pb.TxValidationCode_VALID {
			continue
		}
		for _, k := range touched[i].written {
			if j, ok := updatedBy[k]; ok {
				r.Code = pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE
				r.Error = fmt.Errorf("key %q of namespace %s: its validation parameter was updated by transaction %d of block %d, earlier in the block", k.key, k.ns, j, blockNum)
				break
			}
		}
		if r.Code != pb.TxValidationCode_VALID {
			continue
		}
		for _, k := range touched[i].metadata {
			if updatedBy == nil {
				updatedBy = make(map[nsKey]int)
			}
			if _, ok := updatedBy[k]; !ok {
				updatedBy[k] = i
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func invalid(code pb.TxValidationCode, txID string, format string, args ...any) Result {
	return Result{Code: code, TxID: txID, Error: fmt.Errorf(format, args...)}
}

// checkTx decides one envelope's code, short of the in-block rules (duplicate
// tx IDs, key-level dependencies) and MVCC. The checks and the codes follow
// Fabric 2.5's order (core/common/validation/msgvalidation.go, then
// txvalidator/v20 and its plugin dispatcher); docs/validation-codes.md lists
// them with the places where Cairn deliberately differs.
func (v *Validator) checkTx(b *cb.Block, i int, bundle *channelconfig.Bundle, ledger Ledger, policies Policies) (Result, txKeys) {
	var none txKeys
	raw := b.Data.Data[i]
	if len(raw) == 0 {
		return invalid(pb.TxValidationCode_NIL_ENVELOPE, "", "empty envelope"), none
	}
	env := &cb.Envelope{}
	if err := proto.Unmarshal(raw, env); err != nil {
		return invalid(pb.TxValidationCode_INVALID_OTHER_REASON, "", "envelope does not decode: %v", err), none
	}
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		return invalid(pb.TxValidationCode_BAD_PAYLOAD, "", "payload does not decode: %v", err), none
	}
	ch, sh, err := commonHeader(payload.Header)
	if err != nil {
		return invalid(pb.TxValidationCode_BAD_COMMON_HEADER, ch.GetTxId(), "%v", err), none
	}
	txID := ch.TxId
	if ch.ChannelId != bundle.ChannelID() {
		return invalid(pb.TxValidationCode_TARGET_CHAIN_NOT_FOUND, txID, "transaction for channel %q in a block of %q", ch.ChannelId, bundle.ChannelID()), none
	}
	if cb.HeaderType(ch.Type) == cb.HeaderType_CONFIG {
		return invalid(pb.TxValidationCode_INVALID_CONFIG_TRANSACTION, txID, "config transaction outside a config block"), none
	}
	creator, err := bundle.MSPs().Deserialize(sh.Creator)
	if err != nil {
		return invalid(pb.TxValidationCode_BAD_CREATOR_SIGNATURE, txID, "creator: %v", err), none
	}
	if err := creator.Verify(env.Payload, env.Signature); err != nil {
		return invalid(pb.TxValidationCode_BAD_CREATOR_SIGNATURE, txID, "creator %s signature: %v", creator, err), none
	}
	if cb.HeaderType(ch.Type) != cb.HeaderType_ENDORSER_TRANSACTION {
		// CONFIG_UPDATE: the only other type the common header admits.
		return invalid(pb.TxValidationCode_UNSUPPORTED_TX_PAYLOAD, txID, "header type %s cannot be committed", cb.HeaderType(ch.Type)), none
	}
	if err := envelope.CheckTxID(txID, sh.Nonce, sh.Creator); err != nil {
		return invalid(pb.TxValidationCode_BAD_PROPOSAL_TXID, txID, "%v", err), none
	}
	ap, err := endorserTransaction(payload)
	if err != nil {
		return invalid(pb.TxValidationCode_INVALID_ENDORSER_TRANSACTION, txID, "%v", err), none
	}
	// As Fabric, a tx ID already in the ledger is a duplicate before any
	// endorsement is looked at.
	if exists, err := ledger.TxIDExists(txID); err != nil {
		return Result{TxID: txID, Code: pb.TxValidationCode_INVALID_OTHER_REASON, Error: fmt.Errorf("%w: look up tx ID %s: %v", errLedger, txID, err)}, none
	} else if exists {
		return invalid(pb.TxValidationCode_DUPLICATE_TXID, txID, "tx ID %s is already in the ledger", txID), none
	}

	// From here on, Fabric's plugin dispatcher.
	ext := &pb.ChaincodeHeaderExtension{}
	if err := proto.Unmarshal(ch.Extension, ext); err != nil {
		return invalid(pb.TxValidationCode_BAD_HEADER_EXTENSION, txID, "chaincode header extension: %v", err), none
	}
	prp := &pb.ProposalResponsePayload{}
	action := &pb.ChaincodeAction{}
	if err := proto.Unmarshal(ap.Action.ProposalResponsePayload, prp); err != nil {
		return invalid(pb.TxValidationCode_BAD_RESPONSE_PAYLOAD, txID, "proposal response payload: %v", err), none
	}
	if err := proto.Unmarshal(prp.Extension, action); err != nil {
		return invalid(pb.TxValidationCode_BAD_RESPONSE_PAYLOAD, txID, "chaincode action: %v", err), none
	}
	// Not a Fabric check: Fabric endorsers refuse to endorse a status of 400
	// or more, and Cairn will not commit one that a faulty endorser signed.
	if st := action.GetResponse().GetStatus(); st < 200 || st >= 400 {
		return invalid(pb.TxValidationCode_BAD_RESPONSE_PAYLOAD, txID, "chaincode response status %d", st), none
	}
	rws := &rwset.TxReadWriteSet{}
	if err := proto.Unmarshal(action.Results, rws); err != nil {
		return invalid(pb.TxValidationCode_BAD_RWSET, txID, "read-write set: %v", err), none
	}
	kvs := make([]*kvrwset.KVRWSet, len(rws.NsRwset))
	for j, ns := range rws.NsRwset {
		kvs[j] = &kvrwset.KVRWSet{}
		if err := proto.Unmarshal(ns.Rwset, kvs[j]); err != nil {
			return invalid(pb.TxValidationCode_BAD_RWSET, txID, "namespace %s read-write set: %v", ns.Namespace, err), none
		}
	}
	if ext.ChaincodeId == nil || action.ChaincodeId == nil {
		return invalid(pb.TxValidationCode_INVALID_OTHER_REASON, txID, "no chaincode ID in the header extension or the chaincode action"), none
	}
	cc := ext.ChaincodeId.Name
	if cc == "" {
		return invalid(pb.TxValidationCode_INVALID_CHAINCODE, txID, "empty chaincode name"), none
	}
	if cc != action.ChaincodeId.Name {
		return invalid(pb.TxValidationCode_INVALID_CHAINCODE, txID, "proposal invokes chaincode %q but the endorsed action is of %q", cc, action.ChaincodeId.Name), none
	}
	if len(action.Events) > 0 {
		ev := &pb.ChaincodeEvent{}
		if err := proto.Unmarshal(action.Events, ev); err != nil {
			return invalid(pb.TxValidationCode_INVALID_OTHER_REASON, txID, "chaincode event: %v", err), none
		}
		if ev.ChaincodeId != cc {
			return invalid(pb.TxValidationCode_INVALID_OTHER_REASON, txID, "chaincode event of %q in a transaction of %q", ev.ChaincodeId, cc), none
		}
	}

	// The invoked chaincode is always validated, even without writes (Fabric's
	// FAB-9473); every other namespace is validated if the transaction writes
	// values or metadata to it.
	type nsWrites struct {
		ns string
		kv *kvrwset.KVRWSet
	}
	validate := []nsWrites{{ns: cc}}
	seen := make(map[string]bool, len(rws.NsRwset))
	for j, ns := range rws.NsRwset {
		if seen[ns.Namespace] {
			return invalid(pb.TxValidationCode_ILLEGAL_WRITESET, txID, "namespace %s appears twice in the read-write set", ns.Namespace), none
		}
		seen[ns.Namespace] = true
		switch {
		case ns.Namespace == cc:
			validate[0].kv = kvs[j]
		case len(kvs[j].Writes) > 0 || len(kvs[j].MetadataWrites) > 0:
			validate = append(validate, nsWrites{ns: ns.Namespace, kv: kvs[j]})
		}
	}

	endorsements := ap.Action.Endorsements
	if len(endorsements) == 0 {
		return invalid(pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, txID, "transaction carries no endorsements"), none
	}
	signed := make([]policy.SignedData, 0, len(endorsements))
	prpBytes := ap.Action.ProposalResponsePayload
	for _, e := range endorsements {
		data := make([]byte, 0, len(prpBytes)+len(e.Endorser))
		data = append(append(data, prpBytes...), e.Endorser...)
		signed = append(signed, policy.SignedData{Data: data, Identity: e.Endorser, Signature: e.Signature})
	}
	var keys txKeys
	for _, w := range validate {
		if r := v.checkNamespace(txID, w.ns, w.kv, signed, bundle, ledger, policies, &keys); r != nil {
			return *r, none
		}
	}
	return Result{Code: pb.TxValidationCode_VALID, TxID: txID}, keys
}

// commonHeader is Fabric's validateCommonHeader: the header decodes, its type
// is one a transaction may carry, the epoch is 0, and the signature header has
// a creator and a nonce. The channel header is returned when it decodes, for
// its tx ID.
func commonHeader(h *cb.Header) (*cb.ChannelHeader, *cb.SignatureHeader, error) {
	if h == nil {
		return nil, nil, errors.New("payload has no header")
	}
	ch := &cb.ChannelHeader{}
	if err := proto.Unmarshal(h.ChannelHeader, ch); err != nil {
		return nil, nil, fmt.Errorf("channel header: %w", err)
	}
	sh := &cb.SignatureHeader{}
	if err := proto.Unmarshal(h.SignatureHeader, sh); err != nil {
		return ch, nil, fmt.Errorf("signature header: %w", err)
	}
	switch cb.HeaderType(ch.Type) {
	case cb.HeaderType_ENDORSER_TRANSACTION, cb.HeaderType_CONFIG, cb.HeaderType_CONFIG_UPDATE:
	default:
		return ch, nil, fmt.Errorf("invalid header type %s", cb.HeaderType(ch.Type))
	}
	if ch.Epoch != 0 {
		return ch, nil, fmt.Errorf("epoch %d in channel header, want 0", ch.Epoch)
	}
	if len(sh.Creator) == 0 || len(sh.Nonce) == 0 {
		return ch, nil, errors.New("signature header missing creator or nonce")
	}
	return ch, sh, nil
}

// endorserTransaction is Fabric's validateEndorserTransaction: one action
// whose signature header has a creator and a nonce, and whose endorsed
// proposal response is bound to this transaction's header and proposal
// payload by the proposal hash.
func endorserTransaction(payload *cb.Payload) (*pb.ChaincodeActionPayload, error) {
	tx := &pb.Transaction{}
	if err := proto.Unmarshal(payload.Data, tx); err != nil {
		return nil, fmt.Errorf("transaction: %w", err)
	}
	if len(tx.Actions) != 1 {
		return nil, fmt.Errorf("transaction has %d actions, want 1", len(tx.Actions))
	}
	act := tx.Actions[0]
	sh := &cb.SignatureHeader{}
	if err := proto.Unmarshal(act.GetHeader(), sh); err != nil {
		return nil, fmt.Errorf("action signature header: %w", err)
	}
	if len(sh.Creator) == 0 || len(sh.Nonce) == 0 {
		return nil, errors.New("action signature header missing creator or nonce")
	}
	ap := &pb.ChaincodeActionPayload{}
	if err := proto.Unmarshal(act.GetPayload(), ap); err != nil {
		return nil, fmt.Errorf("chaincode action payload: %w", err)
	}
	if ap.Action == nil {
		return nil, errors.New("chaincode action payload has no endorsed action")
	}
	prp := &pb.ProposalResponsePayload{}
	if err := proto.Unmarshal(ap.Action.ProposalResponsePayload, prp); err != nil {
		return nil, fmt.Errorf("proposal response payload: %w", err)
	}
	h := sha256.New()
	h.Write(payload.Header.ChannelHeader)
	h.Write(act.Header)
	h.Write(ap.ChaincodeProposalPayload)
	if !bytes.Equal(h.Sum(nil), prp.ProposalHash) {
		return nil, errors.New("proposal hash does not match the transaction: the endorsements are for another proposal")
	}
	return ap, nil
}

// checkNamespace is Fabric's key-level endorsement evaluator
// (statebased/validator_keylevel.go) for one namespace: every key written
// (value or metadata) must satisfy the key's committed validation parameter
// if it has one, and the chaincode's policy otherwise; the chaincode policy is
// evaluated at most once, and also when no key was evaluated at all. The
// written keys are added to keys. A nil result means the namespace passes.
func (v *Validator) checkNamespace(txID, ns string, kv *kvrwset.KVRWSet, signed []policy.SignedData, bundle *channelconfig.Bundle, ledger Ledger, policies Policies, keys *txKeys) *Result {
	fail := func(code pb.TxValidationCode, format string, args ...any) *Result {
		r := invalid(code, txID, format, args...)
		return &r
	}
	// As Fabric, the chaincode's policy is resolved first: an undefined
	// namespace is INVALID_CHAINCODE even if every key has its own policy.
	spe, ref, err := policies.EndorsementPolicy(ns, kv.GetWrites())
	if errors.Is(err, ErrUndefined) {
		return fail(pb.TxValidationCode_INVALID_CHAINCODE, "writes to %s: %v", ns, err)
	}
	if err != nil {
		return fail(pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, "endorsement policy of %s: %v", ns, err)
	}
	ccChecked := false
	checkCC := func() *Result {
		if ccChecked {
			return nil
		}
		ccChecked = true
		var err error
		if spe != nil {
			err = policy.EvaluateEnvelope(spe, signed, bundle.MSPs())
		} else {
			var p policy.Policy
			if p, err = bundle.Policies().Policy(ref); err == nil {
				err = p.Evaluate(signed)
			}
		}
		if err != nil {
			return fail(pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, "endorsement policy %s of chaincode %s not satisfied: %v", describe(spe, ref), ns, err)
		}
		return nil
	}

	var keyLevel map[string]error // outcome per distinct validation parameter
	check := func(key string) *Result {
		md, err := ledger.GetStateMetadata(ns, key)
		if err != nil {
			r := Result{TxID: txID, Code: pb.TxValidationCode_INVALID_OTHER_REASON, Error: fmt.Errorf("%w: metadata of %s/%q: %v", errLedger, ns, key, err)}
			return &r
		}
		vp := md[ValidationParameterKey]
		if len(vp) == 0 {
			return checkCC()
		}
		evalErr, done := keyLevel[string(vp)]
		kspe := &cb.SignaturePolicyEnvelope{}
		decodeErr := proto.Unmarshal(vp, kspe)
		if !done {
			// Fabric halts the channel on a parameter it cannot translate; Cairn
			// never halts on ledger contents written by a chaincode, and rejects
			// the write instead.
			if decodeErr != nil {
				evalErr = fmt.Errorf("validation parameter does not decode as a signature policy: %w", decodeErr)
			} else {
				evalErr = policy.EvaluateEnvelope(kspe, signed, bundle.MSPs())
			}
			if keyLevel == nil {
				keyLevel = make(map[string]error)
			}
			keyLevel[string(vp)] = evalErr
		}
		if evalErr != nil {
			desc := "(undecodable)"
			if decodeErr == nil {
				desc = describe(kspe, "")
			}
			return fail(pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, "key %q of namespace %s: key-level endorsement policy %s not satisfied: %v", key, ns, desc, evalErr)
		}
		return nil
	}
	for _, w := range kv.GetWrites() {
		keys.written = append(keys.written, nsKey{ns, w.Key})
		if r := check(w.Key); r != nil {
			return r
		}
	}
	for _, mw := range kv.GetMetadataWrites() {
		k := nsKey{ns, mw.Key}
		keys.written = append(keys.written, k)
		keys.metadata = append(keys.metadata, k)
		if r := check(mw.Key); r != nil {
			return r
		}
	}
	if len(kv.GetWrites()) == 0 && len(kv.GetMetadataWrites()) == 0 {
		return checkCC()
	}
	return nil
}

// describe shows a policy for an error message: the DSL of a signature
// policy, or the path of a channel policy.
func describe(spe *cb.SignaturePolicyEnvelope, ref string) string {
	if spe == nil {
		return ref
	}
	if s, err := policy.FormatDSL(spe); err == nil {
		return s
	}
	return "(signature policy not expressible in the DSL)"
}
