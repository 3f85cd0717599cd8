// Package validator owns the committing peer's transaction checks before MVCC:
// for each envelope of a block it decides the Fabric validation code — envelope
// and header shape, channel, creator signature and MSP, tx ID derivation,
// duplicate tx IDs (in the ledger and earlier in the block) and the endorsement
// policy of the invoked chaincode and of every namespace the transaction
// writes, with Fabric's key-level (state-based) endorsement: a key whose
// committed metadata holds a VALIDATION_PARAMETER is endorsed per that policy.
// docs/validation-codes.md maps every code to its check. MVCC and commit
// belong to the ledger.
//
// Validation runs in two phases so that a committer can pipeline blocks:
// Prepare does everything that does not depend on the state the block applies
// to (decoding, shape, every signature verification) plus a speculative
// endorsement evaluation against whatever state it is given, and may run for
// block N+1 while block N commits; Finish, against the state the block applies
// to, checks duplicate tx IDs, confirms the speculation by re-reading exactly
// the policies and key metadata it read (evaluating again only if one
// changed, e.g. a chaincode definition committed by block N) and applies the
// in-block rules. Validate is both against one state.
//
// A config block (one CONFIG envelope) is checked against the configuration
// in force, as Fabric's peer does: its ConfigEnvelope's LastUpdate must be an
// authorised update of that configuration that produces exactly the carried
// configuration, at the next sequence (configtx.Validate). Its result then
// carries the parsed new configuration for the committer to install; a config
// transaction that fails is INVALID_CONFIG_TRANSACTION and the configuration
// in force stays. The genesis block (block 0) is the bootstrap configuration:
// it has no LastUpdate and is only parsed.
//
// Each call spreads its
// work over a bounded pool of goroutines that live only for that call; a
// Validator holds no state between calls and may be shared.
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
	"github.com/cairn-ledger/cairn/internal/configtx"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// State is the committed state endorsement policies are evaluated against
// (a snapshot that does not move during one Prepare or Finish call).
type State interface {
	// GetStateMetadata returns the committed metadata of a key, nil if the
	// key or its metadata does not exist. Its VALIDATION_PARAMETER entry is
	// the key-level endorsement policy.
	GetStateMetadata(ns, key string) (map[string][]byte, error)
}

// Ledger is what Finish reads of the channel's committed ledger: the block
// store's tx ID index and the state the block applies to.
type Ledger interface {
	State
	TxIDExists(txID string) (bool, error)
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
	// OwnSignatures, if set, recognises endorsements this peer signed itself,
	// whose signatures need no second verification; nil verifies every one.
	OwnSignatures SignatureMemo
}

// SignatureMemo answers whether sig is a signature the local peer produced over
// msg as identity (see package selfsig). A false answer only means the
// signature is verified as usual.
type SignatureMemo interface {
	Signed(identity, msg, sig []byte) bool
}

// Validator checks blocks for one channel at a time; it holds no state between
// calls and may be shared.
type Validator struct {
	log     *slog.Logger
	workers int
	own     SignatureMemo
}

// New returns a Validator.
func New(cfg Config) *Validator {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	return &Validator{log: cfg.Logger, workers: cfg.Workers, own: cfg.OwnSignatures}
}

// Result is one transaction's outcome.
type Result struct {
	Code  pb.TxValidationCode
	TxID  string
	Error error // why the code is not VALID, for logs
	// RWSet is the decoded read-write set of a VALID endorser transaction,
	// so that the ledger need not decode it again; nil otherwise.
	RWSet *RWSet
	// Config is the configuration a VALID config transaction installs, parsed
	// once here for the committer; nil for every other result.
	Config *channelconfig.Bundle
}

// RWSet is a transaction's read-write set as validation decoded it:
// Namespaces[i] is the decoded Rwset of Set.NsRwset[i].
type RWSet struct {
	Set        *rwset.TxReadWriteSet
	Namespaces []*kvrwset.KVRWSet
}

// Validate returns one result per envelope of b. The bundle is the channel's
// configuration in force for b; ledger is the committed ledger b is validated
// against; policies resolves chaincode endorsement policies against committed
// state. A returned error means the block could not be validated at all
// (context cancelled, ledger unreadable). Validate is Prepare and Finish
// against the same state.
func (v *Validator) Validate(ctx context.Context, b *cb.Block, bundle *channelconfig.Bundle, ledger Ledger, policies Policies) ([]Result, error) {
	p, err := v.Prepare(ctx, b, bundle, ledger, policies)
	if err != nil {
		return nil, err
	}
	return v.finish(ctx, p, ledger, policies, false)
}

// Prepared is a block after Prepare: the checks that do not depend on the
// ledger are decided, and every transaction that passed them carries its
// decoded read-write set, its verified signatures and a speculative
// endorsement outcome with the state it read to get it.
type Prepared struct {
	block  *cb.Block
	bundle *channelconfig.Bundle
	config *Result // a config block's decided result; nil for other blocks
	txs    []preparedTx
}

// Block is the prepared block.
func (p *Prepared) Block() *cb.Block { return p.block }

// stage says how far a transaction got in Prepare.
type stage uint8

const (
	// failedEarly: invalid before the duplicate tx ID check; res is final.
	failedEarly stage = iota
	// failedLate: invalid after the duplicate check, without reading state;
	// res is final unless the tx ID is a duplicate.
	failedLate
	// endorsed: the endorsement checks ran against the state Prepare was
	// given; res and keys are their outcome, inputs what they read.
	endorsed
)

type preparedTx struct {
	stage  stage
	res    Result
	keys   txKeys
	checks []nsWrites
	signed []policy.SignedData
	inputs []stateInput
}

// nsWrites is a namespace whose endorsement policy a transaction must meet.
type nsWrites struct {
	ns string
	kv *kvrwset.KVRWSet
}

// Prepare runs, on all workers, every check of b that does not read the
// ledger: envelope shape, channel, creator and its signature, tx ID
// derivation, the endorsed action and its read-write set, and the
// verification of every endorsement signature. It also evaluates the
// endorsement policies against state (policies, and key metadata from
// state), which may be older than the state b finally applies to; Finish
// re-reads what that evaluation read and redoes it only if something
// changed. Prepare of block N+1 may thus run while block N commits, as long
// as bundle is the configuration in force for b (a config block must be
// committed before the next block is prepared). A config block is decided
// entirely here, against bundle (see configTx).
func (v *Validator) Prepare(ctx context.Context, b *cb.Block, bundle *channelconfig.Bundle, state State, policies Policies) (*Prepared, error) {
	n := len(b.GetData().GetData())
	p := &Prepared{block: b, bundle: bundle, txs: make([]preparedTx, n)}
	if block.IsConfig(b) {
		r := configTx(b, bundle)
		p.config = &r
		return p, nil
	}
	err := v.parallel(ctx, n, func(i int) {
		p.txs[i] = v.prepareTx(b, i, bundle, state, policies)
	})
	if err != nil {
		return nil, fmt.Errorf("validate block %d: %w", b.Header.Number, err)
	}
	return p, nil
}

// Finish completes a prepared block against the ledger it applies to: the
// duplicate tx ID check against the ledger, confirmation (or re-evaluation)
// of the endorsement outcome, and the in-block rules. It returns one result
// per envelope; a returned error means the block could not be validated.
func (v *Validator) Finish(ctx context.Context, p *Prepared, ledger Ledger, policies Policies) ([]Result, error) {
	return v.finish(ctx, p, ledger, policies, true)
}

func (v *Validator) finish(ctx context.Context, p *Prepared, ledger Ledger, policies Policies, confirm bool) ([]Result, error) {
	b := p.block
	n := len(p.txs)
	results := make([]Result, n)
	if p.config != nil {
		// Decided in Prepare; there is nothing in the ledger to read. As in
		// Fabric, the tx ID of a config transaction is not checked for
		// duplicates (the ordering service makes it).
		r := *p.config
		results[0] = r
		if r.Code == pb.TxValidationCode_VALID {
			v.log.Info("config transaction valid", "channel", r.Config.ChannelID(), "block", b.Header.Number, "tx.id", r.TxID, "sequence", r.Config.Sequence())
		} else {
			// Not an error of Finish: the block is committed with the
			// transaction marked, but the channel now lags the ordering
			// service's view of its configuration, which an operator must see.
			attrs := []any{"block", b.Header.Number, "tx.id", r.TxID, "code", r.Code.String(), "reason", errString(r.Error)}
			if p.bundle != nil {
				attrs = append(attrs, "channel", p.bundle.ChannelID(), "sequence.kept", p.bundle.Sequence())
			}
			v.log.Error("config transaction invalid: the channel keeps its current configuration", attrs...)
		}
		return results, nil
	}
	touched := make([]txKeys, n)
	err := v.parallel(ctx, n, func(i int) {
		results[i], touched[i] = v.finishTx(&p.txs[i], p.bundle, ledger, policies, confirm)
	})
	if err != nil {
		return nil, fmt.Errorf("validate block %d: %w", b.Header.Number, err)
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
	for i := range results {
		r := &results[i]
		if r.Code != pb.TxValidationCode_VALID {
			r.RWSet = nil
			v.log.Warn("transaction invalid", "channel", p.bundle.ChannelID(), "block", b.Header.Number, "tx.index", i, "tx.id", r.TxID, "code", r.Code.String(), "reason", errString(r.Error), policy.LogAttr(r.Error))
		}
	}
	return results, nil
}

// configTx decides the CONFIG transaction of config block b against the
// configuration in force, current. Fabric does not check the outer
// envelope's signature of a config transaction (at genesis there may be none);
// the authority is in LastUpdate's signatures, which configtx.Validate checks
// against current's mod_policies, and the block itself is signed by the
// ordering service. Every failure is INVALID_CONFIG_TRANSACTION except a
// config transaction of another channel, TARGET_CHAIN_NOT_FOUND as for any
// transaction.
func configTx(b *cb.Block, current *channelconfig.Bundle) Result {
	const code = pb.TxValidationCode_INVALID_CONFIG_TRANSACTION
	num := b.GetHeader().GetNumber()
	env, err := block.Envelope(b, 0)
	if err != nil {
		return invalid(code, "", "config transaction: %v", err)
	}
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		return invalid(code, "", "config transaction payload does not decode: %v", err)
	}
	ch := &cb.ChannelHeader{}
	if err := proto.Unmarshal(payload.GetHeader().GetChannelHeader(), ch); err != nil {
		return invalid(code, "", "config transaction channel header does not decode: %v", err)
	}
	txID := ch.TxId
	if current != nil && ch.ChannelId != current.ChannelID() {
		return invalid(pb.TxValidationCode_TARGET_CHAIN_NOT_FOUND, txID, "config transaction for channel %q in a block of %q", ch.ChannelId, current.ChannelID())
	}
	ce := &cb.ConfigEnvelope{}
	if err := proto.Unmarshal(payload.Data, ce); err != nil {
		return invalid(code, txID, "config envelope does not decode: %v", err)
	}
	if num == 0 {
		// The genesis block bootstraps the channel: there is no configuration
		// before it to check an update against.
		next, err := channelconfig.New(ch.ChannelId, ce.Config)
		if err != nil {
			return invalid(code, txID, "genesis configuration: %v", err)
		}
		return Result{Code: pb.TxValidationCode_VALID, TxID: txID, Config: next}
	}
	if current == nil {
		return invalid(code, txID, "block %d: no configuration in force to check the config transaction against", num)
	}
	next, err := configtx.Validate(current, ce)
	if err != nil {
		return invalid(code, txID, "config transaction (sequence %d) is not a valid update of the configuration in force (sequence %d): %v", ce.GetConfig().GetSequence(), current.Sequence(), err)
	}
	return Result{Code: pb.TxValidationCode_VALID, TxID: txID, Config: next}
}

// finishTx decides one prepared transaction against the ledger.
func (v *Validator) finishTx(tx *preparedTx, bundle *channelconfig.Bundle, ledger Ledger, policies Policies, confirm bool) (Result, txKeys) {
	var none txKeys
	if tx.stage == failedEarly {
		return tx.res, none
	}
	txID := tx.res.TxID
	// As Fabric, a tx ID already in the ledger is a duplicate before any
	// endorsement is looked at.
	if exists, err := ledger.TxIDExists(txID); err != nil {
		return Result{TxID: txID, Code: pb.TxValidationCode_INVALID_OTHER_REASON, Error: fmt.Errorf("%w: look up tx ID %s: %v", errLedger, txID, err)}, none
	} else if exists {
		return invalid(pb.TxValidationCode_DUPLICATE_TXID, txID, "tx ID %s is already in the ledger", txID), none
	}
	if tx.stage == failedLate {
		return tx.res, none
	}
	if confirm && !inputsHold(tx.inputs, ledger, policies) {
		// The state the speculative outcome read has changed (a definition or
		// a key-level policy committed meanwhile): evaluate again. This is the
		// only path that verifies endorsement signatures a second time.
		res, keys := v.endorse(tx, bundle, ledger, policies)
		res.RWSet = tx.res.RWSet
		return res, keys
	}
	return tx.res, tx.keys
}

// parallel runs fn(0..n-1) on the validator's workers; goroutines live only
// for the call.
func (v *Validator) parallel(ctx context.Context, n int, fn func(i int)) error {
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(v.workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				fn(i)
			}
		}()
	}
	var cancelled error
feed:
	for i := 0; i < n; i++ {
		if cancelled = ctx.Err(); cancelled != nil {
			break
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
			cancelled = ctx.Err()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	return cancelled
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

// prepareTx runs one envelope's checks that do not read the ledger, then the
// speculative endorsement evaluation against state and policies. The checks and the codes follow
// Fabric 2.5's order (core/common/validation/msgvalidation.go, then
// txvalidator/v20 and its plugin dispatcher); docs/validation-codes.md lists
// them with the places where Cairn deliberately differs.
func (v *Validator) prepareTx(b *cb.Block, i int, bundle *channelconfig.Bundle, state State, policies Policies) preparedTx {
	early := func(r Result) preparedTx { return preparedTx{stage: failedEarly, res: r} }
	late := func(r Result) preparedTx { return preparedTx{stage: failedLate, res: r} }
	raw := b.Data.Data[i]
	if len(raw) == 0 {
		return early(invalid(pb.TxValidationCode_NIL_ENVELOPE, "", "empty envelope"))
	}
	env := &cb.Envelope{}
	if err := proto.Unmarshal(raw, env); err != nil {
		return early(invalid(pb.TxValidationCode_INVALID_OTHER_REASON, "", "envelope does not decode: %v", err))
	}
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		return early(invalid(pb.TxValidationCode_BAD_PAYLOAD, "", "payload does not decode: %v", err))
	}
	ch, sh, err := commonHeader(payload.Header)
	if err != nil {
		return early(invalid(pb.TxValidationCode_BAD_COMMON_HEADER, ch.GetTxId(), "%v", err))
	}
	txID := ch.TxId
	if ch.ChannelId != bundle.ChannelID() {
		return early(invalid(pb.TxValidationCode_TARGET_CHAIN_NOT_FOUND, txID, "transaction for channel %q in a block of %q", ch.ChannelId, bundle.ChannelID()))
	}
	if cb.HeaderType(ch.Type) == cb.HeaderType_CONFIG {
		return early(invalid(pb.TxValidationCode_INVALID_CONFIG_TRANSACTION, txID, "config transaction outside a config block"))
	}
	creator, err := bundle.MSPs().Deserialize(sh.Creator)
	if err != nil {
		return early(invalid(pb.TxValidationCode_BAD_CREATOR_SIGNATURE, txID, "creator: %v", err))
	}
	if err := creator.Verify(env.Payload, env.Signature); err != nil {
		return early(invalid(pb.TxValidationCode_BAD_CREATOR_SIGNATURE, txID, "creator %s signature: %v", creator, err))
	}
	if cb.HeaderType(ch.Type) != cb.HeaderType_ENDORSER_TRANSACTION {
		// CONFIG_UPDATE: the only other type the common header admits.
		return early(invalid(pb.TxValidationCode_UNSUPPORTED_TX_PAYLOAD, txID, "header type %s cannot be committed", cb.HeaderType(ch.Type)))
	}
	if err := envelope.CheckTxID(txID, sh.Nonce, sh.Creator); err != nil {
		return early(invalid(pb.TxValidationCode_BAD_PROPOSAL_TXID, txID, "%v", err))
	}
	ap, prp, err := endorserTransaction(payload)
	if err != nil {
		return early(invalid(pb.TxValidationCode_INVALID_ENDORSER_TRANSACTION, txID, "%v", err))
	}
	// From here on, Fabric's plugin dispatcher.
	ext := &pb.ChaincodeHeaderExtension{}
	if err := proto.Unmarshal(ch.Extension, ext); err != nil {
		return late(invalid(pb.TxValidationCode_BAD_HEADER_EXTENSION, txID, "chaincode header extension: %v", err))
	}
	// The proposal response payload decoded in endorserTransaction.
	action := &pb.ChaincodeAction{}
	if err := proto.Unmarshal(prp.Extension, action); err != nil {
		return late(invalid(pb.TxValidationCode_BAD_RESPONSE_PAYLOAD, txID, "chaincode action: %v", err))
	}
	// Not a Fabric check: Fabric endorsers refuse to endorse a status of 400
	// or more, and Cairn will not commit one that a faulty endorser signed.
	if st := action.GetResponse().GetStatus(); st < 200 || st >= 400 {
		return late(invalid(pb.TxValidationCode_BAD_RESPONSE_PAYLOAD, txID, "chaincode response status %d", st))
	}
	rws := &rwset.TxReadWriteSet{}
	if err := proto.Unmarshal(action.Results, rws); err != nil {
		return late(invalid(pb.TxValidationCode_BAD_RWSET, txID, "read-write set: %v", err))
	}
	kvs := make([]*kvrwset.KVRWSet, len(rws.NsRwset))
	for j, ns := range rws.NsRwset {
		kvs[j] = &kvrwset.KVRWSet{}
		if err := proto.Unmarshal(ns.Rwset, kvs[j]); err != nil {
			return late(invalid(pb.TxValidationCode_BAD_RWSET, txID, "namespace %s read-write set: %v", ns.Namespace, err))
		}
	}
	if ext.ChaincodeId == nil || action.ChaincodeId == nil {
		return late(invalid(pb.TxValidationCode_INVALID_OTHER_REASON, txID, "no chaincode ID in the header extension or the chaincode action"))
	}
	cc := ext.ChaincodeId.Name
	if cc == "" {
		return late(invalid(pb.TxValidationCode_INVALID_CHAINCODE, txID, "empty chaincode name"))
	}
	if cc != action.ChaincodeId.Name {
		return late(invalid(pb.TxValidationCode_INVALID_CHAINCODE, txID, "proposal invokes chaincode %q but the endorsed action is of %q", cc, action.ChaincodeId.Name))
	}
	if len(action.Events) > 0 {
		ev := &pb.ChaincodeEvent{}
		if err := proto.Unmarshal(action.Events, ev); err != nil {
			return late(invalid(pb.TxValidationCode_INVALID_OTHER_REASON, txID, "chaincode event: %v", err))
		}
		if ev.ChaincodeId != cc {
			return late(invalid(pb.TxValidationCode_INVALID_OTHER_REASON, txID, "chaincode event of %q in a transaction of %q", ev.ChaincodeId, cc))
		}
	}

	// The invoked chaincode is always validated, even without writes (Fabric's
	// FAB-9473); every other namespace is validated if the transaction writes
	// values or metadata to it.
	validate := []nsWrites{{ns: cc}}
	seen := make(map[string]bool, len(rws.NsRwset))
	for j, ns := range rws.NsRwset {
		if seen[ns.Namespace] {
			return late(invalid(pb.TxValidationCode_ILLEGAL_WRITESET, txID, "namespace %s appears twice in the read-write set", ns.Namespace))
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
		return late(invalid(pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, txID, "transaction carries no endorsements"))
	}
	signed := make([]policy.SignedData, 0, len(endorsements))
	prpBytes := ap.Action.ProposalResponsePayload
	for _, e := range endorsements {
		data := make([]byte, 0, len(prpBytes)+len(e.Endorser))
		data = append(append(data, prpBytes...), e.Endorser...)
		own := v.own != nil && v.own.Signed(e.Endorser, data, e.Signature)
		signed = append(signed, policy.SignedData{Data: data, Identity: e.Endorser, Signature: e.Signature, SignatureVerified: own})
	}
	tx := preparedTx{
		stage:  endorsed,
		res:    Result{TxID: txID, RWSet: &RWSet{Set: rws, Namespaces: kvs}},
		checks: validate,
		signed: signed,
	}
	rec := &recorder{state: state, policies: policies}
	res, keys := v.endorse(&tx, bundle, rec, rec)
	res.RWSet = tx.res.RWSet
	tx.res, tx.keys, tx.inputs = res, keys, rec.inputs
	return tx
}

// endorse evaluates the endorsement policies of a prepared transaction
// against state.
func (v *Validator) endorse(tx *preparedTx, bundle *channelconfig.Bundle, state State, policies Policies) (Result, txKeys) {
	var keys txKeys
	for _, w := range tx.checks {
		if r := v.checkNamespace(tx.res.TxID, w.ns, w.kv, tx.signed, bundle, state, policies, &keys); r != nil {
			return *r, txKeys{}
		}
	}
	return Result{Code: pb.TxValidationCode_VALID, TxID: tx.res.TxID}, keys
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
// payload by the proposal hash. It returns the endorsed action and its
// decoded proposal response payload.
func endorserTransaction(payload *cb.Payload) (*pb.ChaincodeActionPayload, *pb.ProposalResponsePayload, error) {
	tx := &pb.Transaction{}
	if err := proto.Unmarshal(payload.Data, tx); err != nil {
		return nil, nil, fmt.Errorf("transaction: %w", err)
	}
	if len(tx.Actions) != 1 {
		return nil, nil, fmt.Errorf("transaction has %d actions, want 1", len(tx.Actions))
	}
	act := tx.Actions[0]
	sh := &cb.SignatureHeader{}
	if err := proto.Unmarshal(act.GetHeader(), sh); err != nil {
		return nil, nil, fmt.Errorf("action signature header: %w", err)
	}
	if len(sh.Creator) == 0 || len(sh.Nonce) == 0 {
		return nil, nil, errors.New("action signature header missing creator or nonce")
	}
	ap := &pb.ChaincodeActionPayload{}
	if err := proto.Unmarshal(act.GetPayload(), ap); err != nil {
		return nil, nil, fmt.Errorf("chaincode action payload: %w", err)
	}
	if ap.Action == nil {
		return nil, nil, errors.New("chaincode action payload has no endorsed action")
	}
	prp := &pb.ProposalResponsePayload{}
	if err := proto.Unmarshal(ap.Action.ProposalResponsePayload, prp); err != nil {
		return nil, nil, fmt.Errorf("proposal response payload: %w", err)
	}
	h := sha256.New()
	h.Write(payload.Header.ChannelHeader)
	h.Write(act.Header)
	h.Write(ap.ChaincodeProposalPayload)
	if !bytes.Equal(h.Sum(nil), prp.ProposalHash) {
		return nil, nil, errors.New("proposal hash does not match the transaction: the endorsements are for another proposal")
	}
	return ap, prp, nil
}

// checkNamespace is Fabric's key-level endorsement evaluator
// (statebased/validator_keylevel.go) for one namespace: every key written
// (value or metadata) must satisfy the key's committed validation parameter
// if it has one, and the chaincode's policy otherwise; the chaincode policy is
// evaluated at most once, and also when no key was evaluated at all. The
// written keys are added to keys. A nil result means the namespace passes.
func (v *Validator) checkNamespace(txID, ns string, kv *kvrwset.KVRWSet, signed []policy.SignedData, bundle *channelconfig.Bundle, state State, policies Policies, keys *txKeys) *Result {
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
		md, err := state.GetStateMetadata(ns, key)
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
