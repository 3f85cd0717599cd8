package policy

import (
	"errors"
	"fmt"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/msp"
)

// offered is one SignedData after deserialisation and verification.
type offered struct {
	index   int
	id      *msp.Identity // nil when the signature does not count at all
	mspID   string
	subject string
	reason  string // why id is nil
	err     error
}

// signatureSet is the outcome of deserialising and verifying a []SignedData
// once, shared by every (sub-)policy of one evaluation. As in Fabric, identities
// that fail deserialisation or verification are dropped, and a second signature
// by an identity already verified is dropped unverified.
type signatureSet struct {
	offered []offered
	valid   []*msp.Identity
	validAt []int // index into offered of each valid identity
}

func newSignatureSet(signed []SignedData, ids *msp.Manager) *signatureSet {
	s := &signatureSet{offered: make([]offered, len(signed))}
	seen := make(map[string]int, len(signed))
	for i, sd := range signed {
		o := &s.offered[i]
		o.index = i
		id, err := ids.Deserialize(sd.Identity)
		if err != nil {
			o.mspID, o.subject = claimedIdentity(sd.Identity)
			o.reason, o.err = identityReason(err), err
			continue
		}
		o.mspID, o.subject = id.MSPID(), id.Certificate().Subject.CommonName
		key := id.MSPID() + "\x00" + id.ID()
		if first, dup := seen[key]; dup {
			o.reason = fmt.Sprintf("duplicate of signature %d by the same identity", first)
			continue
		}
		if !sd.SignatureVerified {
			if err := id.Verify(sd.Data, sd.Signature); err != nil {
				o.reason, o.err = signatureReason(err), err
				continue
			}
		}
		seen[key] = i
		o.id = id
		s.valid = append(s.valid, id)
		s.validAt = append(s.validAt, i)
	}
	return s
}

// claimedIdentity reads what an undeserialisable identity claims to be, for messages.
func claimedIdentity(b []byte) (mspID, subject string) {
	var si mspproto.SerializedIdentity
	if proto.Unmarshal(b, &si) != nil {
		return "", ""
	}
	if c, err := crypto.ParseCertificatePEM(si.IdBytes); err == nil {
		subject = c.Subject.CommonName
	}
	return si.Mspid, subject
}

func identityReason(err error) string {
	switch {
	case errors.Is(err, msp.ErrUnknownMSP):
		return "unknown MSP: " + err.Error()
	case errors.Is(err, msp.ErrRevoked):
		return "revoked: " + err.Error()
	case errors.Is(err, msp.ErrUnknownIssuer):
		return "untrusted issuer: " + err.Error()
	}
	return "invalid identity: " + err.Error()
}

func signatureReason(err error) string {
	switch {
	case errors.Is(err, crypto.ErrHighS):
		return "bad signature (high-S form rejected)"
	case errors.Is(err, crypto.ErrMalformedSignature):
		return "bad signature (malformed)"
	}
	return "bad signature (does not verify over the signed data)"
}

// results converts the set to SignatureResults; countedFor maps a valid
// identity's position to the principal it counted for ("" if none) and
// whyNot explains a valid identity that did not count.
func (s *signatureSet) results(countedFor []string, whyNot func(v int) string) []SignatureResult {
	out := make([]SignatureResult, len(s.offered))
	valid := make(map[int]int, len(s.validAt))
	for v, i := range s.validAt {
		valid[i] = v
	}
	for i, o := range s.offered {
		r := SignatureResult{Index: o.index, MSPID: o.mspID, Subject: o.subject, Reason: o.reason, Err: o.err}
		if v, ok := valid[i]; ok {
			if countedFor != nil && countedFor[v] != "" {
				r.Counted, r.CountedFor = true, countedFor[v]
			} else {
				r.Reason = whyNot(v)
			}
		}
		out[i] = r
	}
	return out
}
