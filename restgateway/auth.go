package restgateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
)

// authenticator maps a request's credentials to a configured identity name.
// It is immutable after construction and safe for concurrent use.
type authenticator struct {
	tokens       []tokenEntry
	fingerprints map[[32]byte]string
	commonNames  map[string]string
}

type tokenEntry struct {
	hash     [32]byte
	identity string
}

func newAuthenticator(cfg Config) *authenticator {
	a := &authenticator{fingerprints: map[[32]byte]string{}, commonNames: map[string]string{}}
	for _, t := range cfg.Tokens {
		var e tokenEntry
		// Validate checked the hex and the length.
		hex.Decode(e.hash[:], []byte(strings.ToLower(t.SHA256)))
		e.identity = t.Identity
		a.tokens = append(a.tokens, e)
	}
	for _, c := range cfg.ClientCerts {
		switch {
		case c.Fingerprint != "":
			var fp [32]byte
			hex.Decode(fp[:], []byte(normalFingerprint(c.Fingerprint)))
			a.fingerprints[fp] = c.Identity
		default:
			a.commonNames[c.SubjectCN] = c.Identity
		}
	}
	return a
}

// identify returns the identity a request authenticates as. A request that
// carries an Authorization header is judged by it alone: a wrong token is
// refused even if a known client certificate came with it, so a caller never
// silently acts as someone other than the credential it sent.
func (a *authenticator) identify(r *http.Request) (string, *apiError) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", errUnauthenticated("the Authorization header must be \"Bearer <token>\"")
		}
		if id, ok := a.token(strings.TrimSpace(token)); ok {
			return id, nil
		}
		return "", errUnauthenticated("unknown bearer token")
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		// The TLS handshake verified the chain against tls.clientRootCAs.
		cert := r.TLS.PeerCertificates[0]
		if id, ok := a.fingerprints[certFingerprint(cert)]; ok {
			return id, nil
		}
		if id, ok := a.commonNames[cert.Subject.CommonName]; ok && cert.Subject.CommonName != "" {
			return id, nil
		}
		return "", errUnauthenticated("the client certificate is not mapped to an identity")
	}
	return "", errUnauthenticated("credentials required: a bearer token or a client TLS certificate")
}

// token compares the token's hash with every configured hash in constant
// time and without stopping at a match, so timing says nothing about which
// entry (if any) matched.
func (a *authenticator) token(token string) (string, bool) {
	h := sha256.Sum256([]byte(token))
	found := ""
	for _, e := range a.tokens {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			found = e.identity
		}
	}
	return found, found != ""
}

// access is an identity's allow lists; empty lists allow everything.
type access struct {
	channels, chaincodes []string
}

func newAccess(c AccessConfig) access {
	return access{channels: slices.Clone(c.Channels), chaincodes: slices.Clone(c.Chaincodes)}
}

// check returns a 403 error when the identity may not use the channel or,
// if chaincode is not empty, the chaincode.
func (ac access) check(channel, chaincode string) *apiError {
	if len(ac.channels) > 0 && !slices.Contains(ac.channels, channel) {
		return errForbidden("this identity may not use channel " + channel)
	}
	if chaincode != "" && len(ac.chaincodes) > 0 && !slices.Contains(ac.chaincodes, chaincode) {
		return errForbidden("this identity may not use chaincode " + chaincode)
	}
	return nil
}
