package restgateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"
)

// Limits on a decoded request, besides the body size: they keep one request
// from turning into an oversized proposal.
const (
	maxArgs           = 1024
	maxTransientKeys  = 256
	maxFunctionLength = 512
)

// txRequest is the body of POST .../transactions and .../queries.
type txRequest struct {
	// Function is the transaction function ("CreateAsset", or
	// "contract:function" for a named contract).
	Function string `json:"function"`
	// Args are UTF-8 strings passed to the chaincode as their bytes.
	Args []string `json:"args"`
	// Transient is private input kept out of the ledger; values are standard
	// base64 (padded), since private data is often binary.
	Transient map[string]string `json:"transient"`
	// EndorsingOrganizations, when set, are the MSP IDs that must endorse
	// (submit) or may evaluate (query).
	EndorsingOrganizations []string `json:"endorsingOrganizations"`
	// Async makes a submit return 202 once the orderer accepted the
	// transaction, without waiting for its commit.
	Async bool `json:"async"`
}

// proposal is a validated txRequest with transient values decoded.
type proposal struct {
	function  string
	args      []string
	transient map[string][]byte
	orgs      []string
	async     bool
}

// readBody reads at most limit bytes of a request body; more is a 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, newAPIError(http.StatusRequestEntityTooLarge, codeTooLarge,
				fmt.Sprintf("request body exceeds %d bytes", limit))
		}
		return nil, errBadRequest("read request body: " + err.Error())
	}
	return body, nil
}

// decodeProposal parses and checks a request body. It never panics, whatever
// the bytes (FuzzDecodeProposal).
func decodeProposal(body []byte) (proposal, *apiError) {
	var req txRequest
	if err := strictUnmarshal(body, &req); err != nil {
		return proposal{}, errBadRequest("request body: " + err.Error())
	}
	switch {
	case req.Function == "":
		return proposal{}, errBadRequest(`request body: "function" is required`)
	case len(req.Function) > maxFunctionLength:
		return proposal{}, errBadRequest(fmt.Sprintf(`request body: "function" is longer than %d bytes`, maxFunctionLength))
	case len(req.Args) > maxArgs:
		return proposal{}, errBadRequest(fmt.Sprintf(`request body: more than %d "args"`, maxArgs))
	case len(req.Transient) > maxTransientKeys:
		return proposal{}, errBadRequest(fmt.Sprintf(`request body: more than %d "transient" keys`, maxTransientKeys))
	}
	p := proposal{function: req.Function, args: req.Args, orgs: req.EndorsingOrganizations, async: req.Async}
	if p.args == nil {
		p.args = []string{}
	}
	for _, org := range req.EndorsingOrganizations {
		if org == "" {
			return proposal{}, errBadRequest(`request body: "endorsingOrganizations" holds an empty MSP ID`)
		}
	}
	if len(req.Transient) > 0 {
		p.transient = make(map[string][]byte, len(req.Transient))
		for k, v := range req.Transient {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return proposal{}, errBadRequest(fmt.Sprintf("request body: transient %q is not standard base64: %v", k, err))
			}
			p.transient[k] = b
		}
	}
	return p, nil
}

// strictUnmarshal decodes exactly one JSON object, refusing unknown fields
// (a misspelt "transient" must not silently drop private data) and trailing
// bytes.
func strictUnmarshal(body []byte, v any) error {
	if len(body) == 0 {
		return errors.New("empty; want a JSON object")
	}
	if !utf8.Valid(body) {
		return errors.New("not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}
