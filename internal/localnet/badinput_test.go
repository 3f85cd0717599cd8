package localnet_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/msp/msptest"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// TestBadInputRefused sends one network every kind of bad input a client or an
// attacker can produce — foreign identities, broken signatures, garbage bytes,
// forged transaction IDs, oversized envelopes, unauthenticated admin calls —
// and checks each is refused with an error that says why, and that the network
// still serves ordinary transactions afterwards with every process alive.
func TestBadInputRefused(t *testing.T) {
	n := startNetwork(t)
	org := n.Info.Organizations[0]
	peerConn := dialPeer(t, n)
	user1 := loadUser(t, org.MSPID, org.Users["user1"])
	user1ID, user1Sign := gatewayIdentity(t, org.MSPID, org.Users["user1"])

	t.Run("UnknownCAClaimingOrg1", func(t *testing.T) {
		// A certificate that looks like an Org1 client but comes from a CA Org1 never heard of.
		leaf := msptest.NewCA(t, org.MSPID).Issue(t, "mallory", "client")
		id, err := identity.NewX509Identity(org.MSPID, leaf.Cert)
		if err != nil {
			t.Fatal(err)
		}
		sign, err := identity.NewPrivateKeySign(leaf.Key)
		if err != nil {
			t.Fatal(err)
		}
		contract := gatewayAs(t, peerConn, id, sign).GetNetwork(n.Info.Channel).GetContract("basic")
		want := []string{"access denied", `not issued by any CA of the MSP "Org1MSP"`}

		_, err = contract.EvaluateTransaction("GetAllAssets")
		wantRefused(t, "evaluate", err, codes.Aborted, want...)
		_, err = contract.SubmitTransaction("CreateAsset", "mallory-asset", "black", "1", "Mallory", "1")
		var endorseErr *client.EndorseError
		if !errors.As(err, &endorseErr) {
			t.Fatalf("submit: got %T %v, want *client.EndorseError", err, err)
		}
		wantRefused(t, "submit", err, codes.Aborted, want...)
	})

	t.Run("TamperedSignature", func(t *testing.T) {
		tampered := func(digest []byte) ([]byte, error) {
			sig, err := user1Sign(digest)
			if err != nil {
				return nil, err
			}
			sig = bytes.Clone(sig)
			sig[len(sig)-1] ^= 0x01 // the last byte of S: still DER, no longer valid
			return sig, nil
		}
		want := []string{"access denied", "signature does not verify"}
		contract := gatewayAs(t, peerConn, user1ID, tampered).GetNetwork(n.Info.Channel).GetContract("basic")
		_, err := contract.EvaluateTransaction("GetAllAssets")
		wantRefused(t, "evaluate", err, codes.Aborted, want...)
		_, err = contract.SubmitTransaction("CreateAsset", "tampered-asset", "grey", "1", "Eve", "1")
		var endorseErr *client.EndorseError
		if !errors.As(err, &endorseErr) {
			t.Fatalf("submit: got %T %v, want *client.EndorseError", err, err)
		}
		wantRefused(t, "submit", err, codes.Aborted, want...)

		// A correctly endorsed transaction whose envelope signature is
		// tampered is refused by the orderer's /Channel/Writers check.
		honest := gatewayAs(t, peerConn, user1ID, user1Sign)
		tx, err := honest.GetNetwork(n.Info.Channel).GetContract("basic").NewProposal("CreateAsset",
			client.WithArguments("tampered-envelope", "grey", "1", "Eve", "1"))
		if err != nil {
			t.Fatal(err)
		}
		endorsed, err := tx.Endorse()
		if err != nil {
			t.Fatalf("endorse: %s", errorText(err))
		}
		unsigned, err := endorsed.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		badSig, err := tampered(endorsed.Digest())
		if err != nil {
			t.Fatal(err)
		}
		forged, err := honest.NewSignedTransaction(unsigned, badSig)
		if err != nil {
			t.Fatal(err)
		}
		_, err = forged.Submit()
		var submitErr *client.SubmitError
		if !errors.As(err, &submitErr) {
			t.Fatalf("submit of a tampered envelope: got %T %v, want *client.SubmitError", err, err)
		}
		wantRefused(t, "submit of a tampered envelope", err, codes.Aborted, "FORBIDDEN", "/Channel/Writers")
	})

	t.Run("MalformedEnvelope", func(t *testing.T) {
		garbage := []byte("\xff\xff\xff\xff not a protobuf message")
		// Two on one stream: a rejection answers the envelope and keeps the stream open.
		for i, resp := range broadcast(t, n, &cb.Envelope{Payload: garbage, Signature: garbage}, &cb.Envelope{}) {
			if resp.Status != cb.Status_BAD_REQUEST || resp.Info == "" {
				t.Errorf("broadcast of garbage #%d: %v %q, want BAD_REQUEST with an explanation", i, resp.Status, resp.Info)
			}
		}

		pr, err := pb.NewEndorserClient(peerConn).ProcessProposal(ctxT(t), &pb.SignedProposal{ProposalBytes: garbage, Signature: garbage})
		if err != nil {
			t.Fatalf("ProcessProposal of garbage: gRPC error %v, want a ProposalResponse with status 500", err)
		}
		if got := pr.GetResponse(); got.GetStatus() != 500 || !strings.Contains(got.GetMessage(), "invalid proposal") {
			t.Fatalf("ProcessProposal of garbage: %d %q, want 500 \"invalid proposal: ...\"", got.GetStatus(), got.GetMessage())
		}
		if pr.GetEndorsement() != nil || pr.GetPayload() != nil {
			t.Fatalf("ProcessProposal of garbage was endorsed: %v", pr)
		}
	})

	t.Run("TxIDNotFromNonceAndCreator", func(t *testing.T) {
		sp, forged := forgedTxIDProposal(t, n.Info.Channel, user1)
		pr, err := pb.NewEndorserClient(peerConn).ProcessProposal(ctxT(t), sp)
		if err != nil {
			t.Fatalf("ProcessProposal: gRPC error %v, want a ProposalResponse with status 500", err)
		}
		if got := pr.GetResponse(); got.GetStatus() != 500 || !strings.Contains(got.GetMessage(), "transaction ID does not match") || !strings.Contains(got.GetMessage(), forged) {
			t.Fatalf("ProcessProposal with a forged tx ID: %d %q, want 500 naming the transaction ID %s", got.GetStatus(), got.GetMessage(), forged)
		}
		if pr.GetEndorsement() != nil {
			t.Fatal("a proposal with a forged tx ID was endorsed")
		}

		// Through the gateway, with request fields that agree with the proposal.
		_, err = gp.NewGatewayClient(peerConn).Evaluate(ctxT(t), &gp.EvaluateRequest{
			TransactionId: forged, ChannelId: n.Info.Channel, ProposedTransaction: sp,
		})
		wantRefused(t, "gateway Evaluate", err, codes.InvalidArgument, "transaction ID does not match", forged)
	})

	t.Run("OversizedEnvelope", func(t *testing.T) {
		// Correctly formed and signed by a channel writer: only the size is wrong.
		data := &cb.Envelope{Payload: bytes.Repeat([]byte{0x5a}, 11<<20)}
		env, err := envelope.NewSignedEnvelope(cb.HeaderType_ENDORSER_TRANSACTION, n.Info.Channel, user1, data)
		if err != nil {
			t.Fatal(err)
		}
		resp := broadcast(t, n, env)[0]
		if resp.Status != cb.Status_REQUEST_ENTITY_TOO_LARGE || !strings.Contains(resp.Info, "exceeds maximum allowed 10485760 bytes") {
			t.Fatalf("broadcast of an 11 MiB envelope: %v %q, want REQUEST_ENTITY_TOO_LARGE naming the 10 MiB limit", resp.Status, resp.Info)
		}
	})

	t.Run("AdminEndpointNeedsClientCert", func(t *testing.T) {
		o := n.Info.Orderers[0]
		url := "https://" + o.AdminAddress + "/participation/v1/channels"
		dom := netconfig.Default().OrdererOrgs[0].Domain
		l := cryptogen.Layout{Root: n.Dir + "/crypto"}
		peerDom := netconfig.Default().PeerOrgs[0].Domain

		anonymous, err := comm.ClientTLS([]string{o.TLSRootCert}, "", "", o.Name)
		if err != nil {
			t.Fatal(err)
		}
		// Go's TLS client only offers a certificate the server's CA list names,
		// so force Org1's admin TLS certificate onto the handshake.
		foreign, err := tls.LoadX509KeyPair(l.UserTLSCertPath(true, peerDom, cryptogen.AdminUser), l.UserTLSKeyPath(true, peerDom, cryptogen.AdminUser))
		if err != nil {
			t.Fatal(err)
		}
		otherOrg := anonymous.Clone()
		otherOrg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil }
		for name, cfg := range map[string]*tls.Config{
			"no client certificate":                  anonymous,
			"another organisation's TLS certificate": otherOrg,
		} {
			code, body, err := httpGet(cfg, url)
			if err == nil && (code < 400 || code >= 500) {
				t.Errorf("GET %s with %s: %d %s, want a TLS error or 4xx", url, name, code, body)
			}
		}

		admin, err := comm.ClientTLS([]string{o.TLSRootCert},
			l.UserTLSCertPath(false, dom, cryptogen.AdminUser), l.UserTLSKeyPath(false, dom, cryptogen.AdminUser), o.Name)
		if err != nil {
			t.Fatal(err)
		}
		code, body, err := httpGet(admin, url)
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET %s as the orderer admin: %d %s %v, want 200", url, code, body, err)
		}
		var list struct {
			Channels []struct{ Name, URL string } `json:"channels"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatalf("channel list %s: %v", body, err)
		}
		if len(list.Channels) != 1 || list.Channels[0].Name != n.Info.Channel {
			t.Fatalf("channel list %s, want exactly %s", body, n.Info.Channel)
		}
	})

	t.Run("NetworkStillServes", func(t *testing.T) {
		gw, conn, err := n.Gateway(0, "user1")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		defer gw.Close()
		contract := gw.GetNetwork(n.Info.Channel).GetContract("basic")
		if _, err := contract.SubmitTransaction("CreateAsset", "after-bad-input", "green", "3", "Ada", "42"); err != nil {
			t.Fatalf("CreateAsset after bad input: %s", errorText(err))
		}
		raw, err := contract.EvaluateTransaction("ReadAsset", "after-bad-input")
		if err != nil {
			t.Fatalf("ReadAsset after bad input: %s", errorText(err))
		}
		var got asset
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if want := (asset{ID: "after-bad-input", Color: "green", Size: 3, Owner: "Ada", AppraisedValue: 42}); got != want {
			t.Fatalf("ReadAsset = %+v, want %+v", got, want)
		}
		// Nothing the refused clients tried reached the ledger.
		for _, id := range []string{"mallory-asset", "tampered-asset", "tampered-envelope"} {
			if _, err := contract.EvaluateTransaction("ReadAsset", id); err == nil || !strings.Contains(errorText(err), "does not exist") {
				t.Errorf("ReadAsset %s: %v, want \"does not exist\"", id, err)
			}
		}
		for _, p := range n.Processes() {
			if err := syscall.Kill(p.PID, 0); err != nil {
				t.Errorf("%s (%s, pid %d) is no longer running: %v; see %s", p.Name, p.Role, p.PID, err, p.Log)
			}
			if log, err := os.ReadFile(p.Log); err == nil && bytes.Contains(log, []byte("panic:")) {
				t.Errorf("%s logged a panic; see %s", p.Name, p.Log)
			}
		}
	})
}

// wantRefused checks that err carries gRPC code and that its message or
// details contain every one of want.
func wantRefused(t *testing.T, what string, err error, code codes.Code, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want it refused", what)
	}
	if got := status.Code(err); got != code {
		t.Errorf("%s: gRPC code %v, want %v: %s", what, got, code, errorText(err))
	}
	text := errorText(err)
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("%s: error does not say %q: %s", what, w, text)
		}
	}
}

// gatewayIdentity reads a network.json user as a Fabric Gateway identity and
// signing function.
func gatewayIdentity(t *testing.T, mspID string, u localnet.User) (*identity.X509Identity, identity.Sign) {
	t.Helper()
	cert, err := identity.CertificateFromPEM(readPEM(t, u.Cert))
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.NewX509Identity(mspID, cert)
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.PrivateKeyFromPEM(readPEM(t, u.Key))
	if err != nil {
		t.Fatal(err)
	}
	sign, err := identity.NewPrivateKeySign(key)
	if err != nil {
		t.Fatal(err)
	}
	return id, sign
}

// ctxT is a context bounded well inside the test's budget.
func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func readPEM(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// loadUser reads a network.json user as a signing identity of mspID.
func loadUser(t *testing.T, mspID string, u localnet.User) *crypto.SigningIdentity {
	t.Helper()
	key, err := crypto.ParsePrivateKeyPEM(readPEM(t, u.Key))
	if err != nil {
		t.Fatal(err)
	}
	return &crypto.SigningIdentity{MSPID: mspID, CertPEM: readPEM(t, u.Cert), Key: key}
}

// dialPeer opens a server-authenticated TLS connection to the first peer of
// the first organisation, closed when the test ends.
func dialPeer(t *testing.T, n *localnet.Network) *grpc.ClientConn {
	t.Helper()
	p := n.Info.Organizations[0].Peers[0]
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(readPEM(t, p.TLSRootCert)) {
		t.Fatalf("no certificate in %s", p.TLSRootCert)
	}
	conn, err := comm.Dial(p.Address, &tls.Config{RootCAs: pool, ServerName: p.Name, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// gatewayAs connects the Fabric Gateway client over conn with any identity
// and signing function, valid or not.
func gatewayAs(t *testing.T, conn *grpc.ClientConn, id identity.Identity, sign identity.Sign) *client.Gateway {
	t.Helper()
	gw, err := client.Connect(id, client.WithSign(sign), client.WithClientConnection(conn),
		client.WithEvaluateTimeout(20*time.Second), client.WithEndorseTimeout(20*time.Second),
		client.WithSubmitTimeout(20*time.Second), client.WithCommitStatusTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return gw
}

// broadcast sends envelopes on one Broadcast stream to the first orderer and
// returns its answer to each.
func broadcast(t *testing.T, n *localnet.Network, envs ...*cb.Envelope) []*ab.BroadcastResponse {
	t.Helper()
	o := n.Info.Orderers[0]
	tlsCfg, err := comm.ClientTLS([]string{o.TLSRootCert}, "", "", o.Name)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := comm.Dial(o.Address, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := ab.NewAtomicBroadcastClient(conn).Broadcast(ctxT(t))
	if err != nil {
		t.Fatalf("open Broadcast stream: %v", err)
	}
	var resps []*ab.BroadcastResponse
	for i, env := range envs {
		if err := stream.Send(env); err != nil {
			t.Fatalf("send envelope #%d: %v", i, err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("Broadcast answered envelope #%d with a stream error instead of a status: %v", i, err)
		}
		resps = append(resps, resp)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("Broadcast stream did not end cleanly after the client closed it: %v", err)
	}
	return resps
}

// forgedTxIDProposal builds a proposal signed by signer whose channel header
// carries a transaction ID that is not SHA-256(nonce ‖ creator).
func forgedTxIDProposal(t *testing.T, channel string, signer *crypto.SigningIdentity) (*pb.SignedProposal, string) {
	t.Helper()
	prop, txID, err := envelope.NewProposal(channel, "basic", [][]byte{[]byte("GetAllAssets")}, nil, signer.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	hdr := &cb.Header{}
	if err := proto.Unmarshal(prop.Header, hdr); err != nil {
		t.Fatal(err)
	}
	ch := &cb.ChannelHeader{}
	if err := proto.Unmarshal(hdr.ChannelHeader, ch); err != nil {
		t.Fatal(err)
	}
	otherNonce := bytes.Repeat([]byte{7}, envelope.NonceSize)
	forged := envelope.TxID(otherNonce, signer.Serialize())
	if forged == txID {
		t.Fatal("forged tx ID equals the real one")
	}
	ch.TxId = forged
	if hdr.ChannelHeader, err = proto.Marshal(ch); err != nil {
		t.Fatal(err)
	}
	if prop.Header, err = proto.Marshal(hdr); err != nil {
		t.Fatal(err)
	}
	sp, err := envelope.SignProposal(prop, signer)
	if err != nil {
		t.Fatal(err)
	}
	return sp, forged
}

// httpGet fetches url over TLS and returns the status code and body.
func httpGet(tlsCfg *tls.Config, url string) (int, []byte, error) {
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, err
}
