package restgateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error codes of the JSON error body; clients branch on these, not on messages.
const (
	codeBadRequest          = "BAD_REQUEST"
	codeUnauthenticated     = "UNAUTHENTICATED"
	codeForbidden           = "FORBIDDEN"
	codeNotFound            = "NOT_FOUND"
	codeMethodNotAllowed    = "METHOD_NOT_ALLOWED"
	codeTooLarge            = "REQUEST_TOO_LARGE"
	codeEndorsementFailed   = "ENDORSEMENT_FAILED"
	codeEvaluationFailed    = "EVALUATION_FAILED"
	codeConflict            = "CONFLICT"
	codeTransactionInvalid  = "TRANSACTION_INVALID"
	codePeerUnavailable     = "PEER_UNAVAILABLE"
	codePeerTimeout         = "PEER_TIMEOUT"
	codePeerError           = "PEER_ERROR"
	codeIdentityUnavailable = "IDENTITY_UNAVAILABLE"
	codeInternal            = "INTERNAL"
)

// apiError is every failure the API reports: an HTTP status and the JSON body
// {"error": {...}}.
type apiError struct {
	status int
	body   errorBody
	// cause is logged, not sent: failures of the gateway itself may name
	// files or internals the caller has no business seeing.
	cause error
}

type errorBody struct {
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Details []errorDetail `json:"details,omitempty"`
	// TxID, ValidationCode and BlockNumber describe a transaction that was
	// submitted but did not commit VALID, or whose commit status is unknown.
	TxID           string  `json:"txId,omitempty"`
	ValidationCode string  `json:"validationCode,omitempty"`
	BlockNumber    *uint64 `json:"blockNumber,omitempty"`
}

// errorDetail is one peer's part of a failure (Fabric's gateway.ErrorDetail).
type errorDetail struct {
	Address string `json:"address"`
	MSPID   string `json:"mspId"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, e.body.Code, e.body.Message)
}

func newAPIError(status int, code, msg string) *apiError {
	return &apiError{status: status, body: errorBody{Code: code, Message: msg}}
}

func errBadRequest(msg string) *apiError {
	return newAPIError(http.StatusBadRequest, codeBadRequest, msg)
}
func errUnauthenticated(msg string) *apiError {
	return newAPIError(http.StatusUnauthorized, codeUnauthenticated, msg)
}
func errForbidden(msg string) *apiError { return newAPIError(http.StatusForbidden, codeForbidden, msg) }
func errNotFound(msg string) *apiError  { return newAPIError(http.StatusNotFound, codeNotFound, msg) }

// toAPIError classifies err: an apiError as is, anything else by
// fromGatewayError.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return fromGatewayError(err)
}

// writeError writes err as the JSON error body.
func writeError(w http.ResponseWriter, err error) {
	ae := toAPIError(err)
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cairn"`)
	}
	writeJSON(w, ae.status, map[string]errorBody{"error": ae.body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	// The status line is out; a failed write means the client went away.
	_ = enc.Encode(v)
}

// fromGatewayError is the API's one mapping from fabric-gateway client errors
// (and gRPC statuses) to HTTP statuses:
//
//   - CommitError: 409 for MVCC_READ_CONFLICT, PHANTOM_READ_CONFLICT and
//     DUPLICATE_TXID (retrying may succeed, or already did), else 422; the
//     body carries the validation code.
//   - InvalidArgument 400, PermissionDenied 403, NotFound 404 (and the
//     peer's "channel ... not found", which Fabric reports as Unavailable).
//   - Aborted or Unknown from endorsement or evaluation: the chaincode or an
//     endorser refused the proposal, 422 with each peer's message.
//   - Unavailable, FailedPrecondition (no endorsers can be reached) and
//     ResourceExhausted 503; DeadlineExceeded 504; anything else 502.
func fromGatewayError(err error) *apiError {
	if errors.Is(err, errIdentityUnavailable) {
		ae := newAPIError(http.StatusInternalServerError, codeIdentityUnavailable, "the gateway cannot sign as this identity now; its log says why")
		ae.cause = err
		return ae
	}
	var commitErr *client.CommitError
	if errors.As(err, &commitErr) {
		return commitFailure(commitErr.TransactionID, commitErr.Code, nil)
	}
	phase := ""
	var txErr *client.TransactionError
	var endorseErr *client.EndorseError
	var submitErr *client.SubmitError
	var statusErr *client.CommitStatusError
	switch {
	case errors.As(err, &endorseErr):
		phase = "endorse"
	case errors.As(err, &submitErr):
		phase = "submit"
	case errors.As(err, &statusErr):
		phase = "commit status"
	}
	errors.As(err, &txErr)

	// Take the status from the innermost carrier so that its message is the
	// peer's, not the client library's wrapping text.
	var st *status.Status
	var carrier interface{ GRPCStatus() *status.Status }
	if errors.As(err, &carrier) {
		st = carrier.GRPCStatus()
	}
	if st == nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			st = status.New(codes.DeadlineExceeded, err.Error())
		case errors.Is(err, context.Canceled):
			st = status.New(codes.Canceled, err.Error())
		default:
			ae := newAPIError(http.StatusInternalServerError, codeInternal, "internal error; the gateway's log says more")
			ae.cause = err
			return ae
		}
	}
	msg := st.Message()
	if phase != "" {
		msg = phase + ": " + msg
	}
	var ae *apiError
	switch st.Code() {
	case codes.InvalidArgument:
		ae = newAPIError(http.StatusBadRequest, codeBadRequest, msg)
	case codes.PermissionDenied:
		ae = newAPIError(http.StatusForbidden, codeForbidden, msg)
	case codes.NotFound:
		ae = newAPIError(http.StatusNotFound, codeNotFound, msg)
	case codes.Unavailable:
		if channelNotFound(st.Message()) {
			ae = newAPIError(http.StatusNotFound, codeNotFound, msg)
		} else {
			ae = newAPIError(http.StatusServiceUnavailable, codePeerUnavailable, msg)
		}
	case codes.Aborted, codes.Unknown:
		switch phase {
		case "endorse":
			ae = newAPIError(http.StatusUnprocessableEntity, codeEndorsementFailed, msg)
		case "":
			ae = newAPIError(http.StatusUnprocessableEntity, codeEvaluationFailed, msg)
		default:
			ae = newAPIError(http.StatusBadGateway, codePeerError, msg)
		}
	case codes.FailedPrecondition, codes.ResourceExhausted:
		ae = newAPIError(http.StatusServiceUnavailable, codePeerUnavailable, msg)
	case codes.DeadlineExceeded, codes.Canceled:
		ae = newAPIError(http.StatusGatewayTimeout, codePeerTimeout, msg)
	case codes.Unauthenticated:
		// The peer refused the gateway's identity: a configuration problem
		// of the gateway, not of the caller, who did authenticate to us.
		ae = newAPIError(http.StatusBadGateway, codePeerError, msg)
	default:
		ae = newAPIError(http.StatusBadGateway, codePeerError, msg)
	}
	for _, d := range st.Details() {
		if gd, ok := d.(*gp.ErrorDetail); ok {
			ae.body.Details = append(ae.body.Details, errorDetail{Address: gd.GetAddress(), MSPID: gd.GetMspId(), Message: gd.GetMessage()})
		}
	}
	if txErr != nil {
		ae.body.TxID = txErr.TransactionID
	}
	return ae
}

// channelNotFound recognises the peer's answer for a channel it has not
// joined, which Fabric's gateway (and Cairn's, to match it) reports as
// Unavailable rather than NotFound.
func channelNotFound(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "channel") && strings.Contains(m, "not found")
}

// commitFailure reports a transaction that committed with a code other than VALID.
func commitFailure(txID string, code peer.TxValidationCode, block *uint64) *apiError {
	status, errCode := http.StatusUnprocessableEntity, codeTransactionInvalid
	switch code {
	case peer.TxValidationCode_MVCC_READ_CONFLICT, peer.TxValidationCode_PHANTOM_READ_CONFLICT, peer.TxValidationCode_DUPLICATE_TXID:
		status, errCode = http.StatusConflict, codeConflict
	}
	ae := newAPIError(status, errCode, fmt.Sprintf("transaction %s was committed as invalid: %s", txID, code))
	ae.body.TxID, ae.body.ValidationCode, ae.body.BlockNumber = txID, code.String(), block
	return ae
}
