// Package validator owns the committing peer's transaction checks before MVCC:
// for each envelope of a block it decides the Fabric validation code — envelope
// and header shape, channel, creator signature and MSP, tx ID derivation,
// duplicate tx IDs (in the ledger and earlier in the block) and the endorsement
// policy of every namespace the transaction writes. MVCC and commit belong to
// the ledger. Signature work is spread over a bounded pool of goroutines that
// live only for one Validate call.
package validator

import (
	"context"
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

// Ledger is what validation reads of the channel's committed ledger.
type Ledger interface {
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
// configuration in force for b; policies resolves chaincode endorsement
// policies against committed state. A returned error means the block could not
// be validated at all (context cancelled, ledger unreadable).
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

	jobs := make(chan int)
	var wg sync.WaitGroup
	workers := min(v.workers, n)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				results[i] = v.checkTx(b, i, bundle, ledger, policies)
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

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func invalid(code pb.TxValidationCode, txID string, format string, args ...any) Result {
	return Result{Code: code, TxID: txID, Error: fmt.Errorf(format, args...)}
}

// checkTx decides one envelope's code, short of duplicates and MVCC.
func (v *Validator) checkTx(b *cb.Block, i int, bundle *channelconfig.Bundle, ledger Ledger, policies Policies) Result {
	raw := b.Data.Data[i]
	if len(raw) == 0 {
		return invalid(pb.TxValidationCode_NIL_ENVELOPE, "", "empty envelope")
	}
	env := &cb.Envelope{}
	if err := proto.Unmarshal(raw, env); err != nil {
		return invalid(pb.TxValidationCode_NIL_ENVELOPE, "", "envelope: %v", err)
	}
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil || payload.Header == nil {
		return invalid(pb.TxValidationCode_BAD_PAYLOAD, "", "payload does not decode or has no header")
	}
	ch := &cb.ChannelHeader{}
	if err := proto.Unmarshal(payload.Header.ChannelHeader, ch); err != nil {
		return invalid(pb.TxValidationCode_BAD_CHANNEL_HEADER, "", "channel header: %v", err)
	}
	sh := &cb.SignatureHeader{}
	if err := proto.Unmarshal(payload.Header.SignatureHeader, sh); err != nil || len(sh.Creator) == 0 || len(sh.Nonce) == 0 {
		return invalid(pb.TxValidationCode_BAD_COMMON_HEADER, ch.TxId, "signature header missing creator or nonce")
	}
	txID := ch.TxId
	if ch.ChannelId != bundle.ChannelID() {
		return invalid(pb.TxValidationCode_TARGET_CHAIN_NOT_FOUND, txID, "transaction for channel %q in a block of %q", ch.ChannelId, bundle.ChannelID())
	}
	switch cb.HeaderType(ch.Type) {
	case cb.HeaderType_ENDORSER_TRANSACTION:
	case cb.HeaderType_CONFIG:
		return invalid(pb.TxValidationCode_INVALID_CONFIG_TRANSACTION, txID, "config transaction outside a config block")
	default:
		return invalid(pb.TxValidationCode_UNKNOWN_TX_TYPE, txID, "header type %d is not supported", ch.Type)
	}
	creator, err := bundle.MSPs().Deserialize(sh.Creator)
	if err != nil {
		return invalid(pb.TxValidationCode_BAD_CREATOR_SIGNATURE, txID, "creator: %v", err)
	}
	if err := creator.Verify(env.Payload, env.Signature); err != nil {
		return invalid(pb.TxValidationCode_BAD_CREATOR_SIGNATURE, txID, "creator %s signature: %v", creator, err)
	}
	if err := envelope.CheckTxID(txID, sh.Nonce, sh.Creator); err != nil {
		return invalid(pb.TxValidationCode_BAD_PROPOSAL_TXID, txID, "%v", err)
	}
	// As Fabric, a tx ID already in the ledger is a duplicate before any
	// endorsement is looked at.
	if exists, err := ledger.TxIDExists(txID); err != nil {
		return Result{TxID: txID, Code: pb.TxValidationCode_INVALID_OTHER_REASON, Error: fmt.Errorf("%w: look up tx ID %s: %v", errLedger, txID, err)}
	} else if exists {
		return invalid(pb.TxValidationCode_DUPLICATE_TXID, txID, "tx ID %s is already in the ledger", txID)
	}
	parsed := &envelope.Parsed{Envelope: env, Payload: payload, ChannelHeader: ch, SignatureHeader: sh}
	tx, err := envelope.UnpackTransaction(parsed)
	if err != nil {
		return invalid(pb.TxValidationCode_INVALID_ENDORSER_TRANSACTION, txID, "%v", err)
	}
	if st := tx.Action.GetResponse().GetStatus(); st < 200 || st >= 400 {
		return invalid(pb.TxValidationCode_BAD_RESPONSE_PAYLOAD, txID, "chaincode response status %d", st)
	}
	rws := &rwset.TxReadWriteSet{}
	if err := proto.Unmarshal(tx.Action.Results, rws); err != nil {
		return invalid(pb.TxValidationCode_BAD_RWSET, txID, "read-write set: %v", err)
	}
	endorsements := tx.Endorsements()
	if len(endorsements) == 0 {
		return invalid(pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, txID, "transaction carries no endorsements")
	}
	signed := make([]policy.SignedData, 0, len(endorsements))
	prp := tx.ActionPayload.Action.ProposalResponsePayload
	for _, e := range endorsements {
		data := make([]byte, 0, len(prp)+len(e.Endorser))
		data = append(append(data, prp...), e.Endorser...)
		signed = append(signed, policy.SignedData{Data: data, Identity: e.Endorser, Signature: e.Signature})
	}
	// Every namespace the transaction writes must be endorsed per its own policy.
	for _, ns := range rws.NsRwset {
		kv := &kvrwset.KVRWSet{}
		if err := proto.Unmarshal(ns.Rwset, kv); err != nil {
			return invalid(pb.TxValidationCode_BAD_RWSET, txID, "namespace %s read-write set: %v", ns.Namespace, err)
		}
		if len(kv.Writes) == 0 && len(kv.MetadataWrites) == 0 {
			continue
		}
		spe, ref, err := policies.EndorsementPolicy(ns.Namespace, kv.Writes)
		if errors.Is(err, ErrUndefined) {
			return invalid(pb.TxValidationCode_INVALID_CHAINCODE, txID, "writes to %s: %v", ns.Namespace, err)
		}
		if err != nil {
			return invalid(pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, txID, "endorsement policy of %s: %v", ns.Namespace, err)
		}
		if spe != nil {
			err = policy.EvaluateEnvelope(spe, signed, bundle.MSPs())
		} else {
			var p policy.Policy
			if p, err = bundle.Policies().Policy(ref); err == nil {
				err = p.Evaluate(signed)
			}
		}
		if err != nil {
			return invalid(pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, txID, "endorsement policy of %s not satisfied: %v", ns.Namespace, err)
		}
	}
	return Result{Code: pb.TxValidationCode_VALID, TxID: txID}
}
