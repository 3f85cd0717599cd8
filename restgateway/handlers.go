package restgateway

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// txResponse answers a submit; Result is set when the chaincode's result is
// UTF-8, ResultBase64 always.
type txResponse struct {
	TxID           string  `json:"txId"`
	Result         *string `json:"result,omitempty"`
	ResultBase64   string  `json:"resultBase64"`
	BlockNumber    *uint64 `json:"blockNumber,omitempty"`
	ValidationCode string  `json:"validationCode,omitempty"`
}

// queryResponse answers an evaluate.
type queryResponse struct {
	Result       *string `json:"result,omitempty"`
	ResultBase64 string  `json:"resultBase64"`
}

// statusResponse answers a transaction status lookup.
type statusResponse struct {
	TxID           string `json:"txId"`
	ValidationCode string `json:"validationCode"`
	Valid          bool   `json:"valid"`
	BlockNumber    uint64 `json:"blockNumber"`
}

func textResult(b []byte) *string {
	if !utf8.Valid(b) {
		return nil
	}
	s := string(b)
	return &s
}

// prepare is the common start of submit and evaluate: access check, body,
// connected identity.
func (g *Gateway) prepare(w http.ResponseWriter, r *http.Request, who *signer) (*client.Contract, proposal, error) {
	channel, chaincode := r.PathValue("channel"), r.PathValue("chaincode")
	if err := who.access.check(channel, chaincode); err != nil {
		return nil, proposal{}, err
	}
	body, aerr := readBody(w, r, g.cfg.MaxRequestBytes)
	if aerr != nil {
		return nil, proposal{}, aerr
	}
	p, aerr := decodeProposal(body)
	if aerr != nil {
		return nil, proposal{}, aerr
	}
	sess, err := g.ids.session(r.Context(), who.name)
	if err != nil {
		return nil, proposal{}, err
	}
	return sess.gw.GetNetwork(channel).GetContract(chaincode), p, nil
}

func proposalOptions(p proposal) []client.ProposalOption {
	opts := []client.ProposalOption{client.WithArguments(p.args...)}
	if len(p.transient) > 0 {
		opts = append(opts, client.WithTransient(p.transient))
	}
	if len(p.orgs) > 0 {
		opts = append(opts, client.WithEndorsingOrganizations(p.orgs...))
	}
	return opts
}

// submit endorses, submits and (unless async) waits for the commit.
func (g *Gateway) submit(w http.ResponseWriter, r *http.Request, who *signer) error {
	contract, p, err := g.prepare(w, r, who)
	if err != nil {
		return err
	}
	prop, err := contract.NewProposal(p.function, proposalOptions(p)...)
	if err != nil {
		return errBadRequest("build proposal: " + err.Error())
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeouts.Endorse)
	tx, err := prop.EndorseWithContext(ctx)
	cancel()
	if err != nil {
		return err
	}
	ctx, cancel = context.WithTimeout(r.Context(), g.cfg.Timeouts.Submit)
	commit, err := tx.SubmitWithContext(ctx)
	cancel()
	if err != nil {
		return err
	}
	res := txResponse{TxID: tx.TransactionID(), Result: textResult(tx.Result()), ResultBase64: base64.StdEncoding.EncodeToString(tx.Result())}
	if p.async {
		writeJSON(w, http.StatusAccepted, res)
		return nil
	}
	ctx, cancel = context.WithTimeout(r.Context(), g.cfg.Timeouts.CommitStatus)
	defer cancel()
	st, err := commit.StatusWithContext(ctx)
	if err != nil {
		return err
	}
	if !st.Successful {
		return commitFailure(st.TransactionID, st.Code, &st.BlockNumber)
	}
	res.BlockNumber, res.ValidationCode = &st.BlockNumber, st.Code.String()
	writeJSON(w, http.StatusOK, res)
	return nil
}

// evaluate runs a query on one peer; nothing is ordered.
func (g *Gateway) evaluate(w http.ResponseWriter, r *http.Request, who *signer) error {
	contract, p, err := g.prepare(w, r, who)
	if err != nil {
		return err
	}
	if p.async {
		return errBadRequest(`request body: "async" applies to transactions, not queries`)
	}
	prop, err := contract.NewProposal(p.function, proposalOptions(p)...)
	if err != nil {
		return errBadRequest("build proposal: " + err.Error())
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeouts.Evaluate)
	defer cancel()
	result, err := prop.EvaluateWithContext(ctx)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, queryResponse{Result: textResult(result), ResultBase64: base64.StdEncoding.EncodeToString(result)})
	return nil
}

// maxTxIDLength bounds a transaction ID in a URL (Fabric's are 64 hex digits).
const maxTxIDLength = 256

// txStatus asks the peer's CommitStatus for a transaction. The peer waits for
// transactions it has not committed, whether pending or unknown, so the wait
// is bounded (txStatusWait, or ?wait= up to the commitStatus timeout) and
// running out answers 404: not committed within that time.
func (g *Gateway) txStatus(w http.ResponseWriter, r *http.Request, who *signer) error {
	channel, txID := r.PathValue("channel"), r.PathValue("txid")
	if err := who.access.check(channel, ""); err != nil {
		return err
	}
	if len(txID) > maxTxIDLength || strings.ContainsFunc(txID, func(c rune) bool { return c <= ' ' || c > '~' }) {
		return errBadRequest(fmt.Sprintf("transaction ID must be at most %d printable ASCII characters", maxTxIDLength))
	}
	wait := g.cfg.Timeouts.TxStatusWait
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return errBadRequest(fmt.Sprintf("wait %q is not a duration such as 500ms or 10s", s))
		}
		wait = min(d, g.cfg.Timeouts.CommitStatus)
	}
	sess, err := g.ids.session(r.Context(), who.name)
	if err != nil {
		return err
	}
	creator, err := proto.Marshal(&mspproto.SerializedIdentity{Mspid: who.id.MspID(), IdBytes: who.id.Credentials()})
	if err != nil {
		return fmt.Errorf("serialize identity: %w", err)
	}
	req, err := proto.Marshal(&gp.CommitStatusRequest{TransactionId: txID, ChannelId: channel, Identity: creator})
	if err != nil {
		return fmt.Errorf("commit status request: %w", err)
	}
	signed, err := proto.Marshal(&gp.SignedCommitStatusRequest{Request: req})
	if err != nil {
		return fmt.Errorf("commit status request: %w", err)
	}
	commit, err := sess.gw.NewCommit(signed)
	if err != nil {
		return fmt.Errorf("commit status request: %w", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	st, err := commit.StatusWithContext(ctx)
	if err != nil {
		if r.Context().Err() == nil && (errors.Is(ctx.Err(), context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded) {
			return errNotFound(fmt.Sprintf("transaction %s is not committed on channel %s (waited %s): unknown, or still pending", txID, channel, wait))
		}
		return err
	}
	writeJSON(w, http.StatusOK, statusResponse{TxID: txID, ValidationCode: st.Code.String(), Valid: st.Successful, BlockNumber: st.BlockNumber})
	return nil
}
