package adminsdk_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-admin-sdk/pkg/chaincode"
	"github.com/hyperledger/fabric-admin-sdk/pkg/channel"
	"github.com/hyperledger/fabric-admin-sdk/pkg/discovery"
	adminid "github.com/hyperledger/fabric-admin-sdk/pkg/identity"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	dpb "github.com/hyperledger/fabric-protos-go-apiv2/discovery"
	gpb "github.com/hyperledger/fabric-protos-go-apiv2/gossip"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
)

// newChannel is the channel the test creates with the SDK.
const newChannel = "adminsdkchannel"

// participationInfo is the JSON body the channel participation API returns
// for one channel (osnadmin's ChannelInfo): what CreateChannel's response and
// the URL a ListChannel entry names hold.
type participationInfo struct {
	Name              string `json:"name"`
	URL               string `json:"url"`
	ConsensusRelation string `json:"consensusRelation"`
	Status            string `json:"status"`
	Height            uint64 `json:"height"`
}

// TestChannelsWithAdminSDK drives channel administration with
// fabric-admin-sdk v0.2.0's channel and discovery packages against a local
// network of three Raft orderers and two organisations (one peer each), as an
// operator's tool would:
//
//   - on every orderer's channel participation API (mutual TLS with the
//     orderer organisation admin's TLS certificate), ListChannel lists
//     mychannel, CreateChannel joins every orderer to a new channel from a
//     genesis block `cairn channel genesis` builds, ListChannel then lists
//     both, and GetConfigBlockFromOrderer (Deliver) returns the genesis
//     block; a client certificate from a CA the orderer does not trust is
//     refused, and so are a second join and a join block that is no block;
//   - each organisation's admin joins its peer to the new channel with
//     JoinChannel (cscc JoinChain), which refuses a non-admin and a second
//     join; ListChannelOnPeer lists both channels; GetConfigBlock (cscc) and
//     GetBlockChainInfo (qscc) return block 0 and height 1 on the new
//     channel, and on mychannel the config block the orderers return;
//   - the new channel orders and commits: a transaction through Org1's
//     gateway becomes block 1 on every orderer and both peers, and the
//     orderers still return the genesis block as the config block;
//   - the discovery package's PeerMembershipQuery on both channels returns
//     the peers of both organisations, each with its endpoint, identity and
//     ledger height; as in Fabric, the peer refuses a request not bound to a
//     TLS client certificate, and denies an identity its channel does not
//     know.
func TestChannelsWithAdminSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local network; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	info, orgs := startNetworkWith(ctx, t, 3)
	osn := newOrdererAdmin(t, info)
	// Org1's admin reads channels from the orderers (it is a reader of both)
	// over a TLS connection presenting its TLS client certificate.
	org1TLS := adminTLSCert(t, info.Organizations[0].Peers[0].TLSRootCert)

	for _, o := range info.Orderers {
		osn.checkChannels(t, o.Name, osnURL(o.AdminAddress), info.Channel)
	}
	checkUntrustedParticipationClients(t, info, osn)

	genesis := genesisBlock(ctx, t, info, newChannel)
	createChannel(t, info, osn, genesis)
	for _, o := range info.Orderers {
		osn.checkChannels(t, o.Name, osnURL(o.AdminAddress), info.Channel, newChannel)
	}
	var mychannelConfig *cb.Block
	for i, o := range info.Orderers {
		conn := dialOrderer(t, info, i, org1TLS)
		b := configBlockFromOrderer(ctx, t, conn, orgs[0], o.Name, newChannel, org1TLS)
		checkSameBlock(t, "GetConfigBlockFromOrderer "+newChannel+" from "+o.Name, b, genesis)
		b = configBlockFromOrderer(ctx, t, conn, orgs[0], o.Name, info.Channel, org1TLS)
		checkConfigBlock(t, "GetConfigBlockFromOrderer "+info.Channel+" from "+o.Name, b, info.Channel)
		if mychannelConfig == nil {
			mychannelConfig = b
		}
		checkSameBlock(t, "GetConfigBlockFromOrderer "+info.Channel+" from "+o.Name, b, mychannelConfig)
	}

	joinPeers(ctx, t, info, orgs, genesis)
	for _, org := range orgs {
		checkPeerChannels(ctx, t, org, info.Channel, genesis, mychannelConfig)
	}

	orderOnNewChannel(ctx, t, info, orgs, osn, genesis)
	for i, o := range info.Orderers {
		b := configBlockFromOrderer(ctx, t, dialOrderer(t, info, i, org1TLS), orgs[0], o.Name, newChannel, org1TLS)
		checkSameBlock(t, "GetConfigBlockFromOrderer "+newChannel+" from "+o.Name+" after block 1", b, genesis)
	}

	checkDiscovery(ctx, t, info, orgs, org1TLS)
}

// ordererAdmin is the orderer organisation's administrator as the channel
// participation API authenticates it: its TLS client certificate, and the
// orderers' TLS CA.
type ordererAdmin struct {
	roots *x509.CertPool
	cert  tls.Certificate
}

func newOrdererAdmin(t *testing.T, info *networkInfo) *ordererAdmin {
	t.Helper()
	// Every orderer of the network belongs to the one orderer organisation.
	return &ordererAdmin{
		roots: certPool(t, info.Orderers[0].TLSRootCert),
		cert:  adminTLSCert(t, info.Orderers[0].TLSRootCert),
	}
}

// checkUntrustedParticipationClients checks that an orderer's participation
// API serves no client whose TLS certificate comes from a CA it does not
// trust: one of its own, or Org1's TLS CA (whose certificates the peers
// trust, not the orderers' admin endpoint). Given only such certificates,
// the SDK's client sends none and the orderer requires one; a client that
// sends one anyway is refused in the handshake.
func checkUntrustedParticipationClients(t *testing.T, info *networkInfo, osn *ordererAdmin) {
	t.Helper()
	url := osnURL(info.Orderers[0].AdminAddress)
	for name, cert := range map[string]tls.Certificate{
		"self-signed client certificate":  selfSignedTLSCert(t),
		"Org1MSP admin's TLS certificate": adminTLSCert(t, info.Organizations[0].Peers[0].TLSRootCert),
	} {
		if list, err := channel.ListChannel(url, osn.roots, cert); err == nil {
			t.Errorf("ListChannel with a %s = %+v, want a TLS error", name, list)
		}
		forced := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:              osn.roots,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
			MinVersion:           tls.VersionTLS12,
		}}}
		resp, err := forced.Get(url + "/participation/v1/channels")
		if err == nil {
			resp.Body.Close()
			t.Errorf("GET the channel list presenting a %s answered %s, want a TLS error", name, resp.Status)
		}
		forced.CloseIdleConnections()
	}
}

// createChannel joins every orderer to the new channel with the SDK's
// CreateChannel, checking each answer, then checks that a second join and a
// join with no block are refused as Fabric refuses them.
func createChannel(t *testing.T, info *networkInfo, osn *ordererAdmin, genesis *cb.Block) {
	t.Helper()
	want := participationInfo{Name: newChannel, URL: "/participation/v1/channels/" + newChannel,
		ConsensusRelation: "consenter", Status: "active", Height: 1}
	for _, o := range info.Orderers {
		resp, err := channel.CreateChannel(osnURL(o.AdminAddress), genesis, osn.roots, osn.cert)
		if err != nil {
			t.Fatalf("CreateChannel %s on %s: %v", newChannel, o.Name, err)
		}
		if got := readParticipationInfo(t, resp, http.StatusCreated); got != want {
			t.Errorf("CreateChannel %s on %s answered %+v, want %+v", newChannel, o.Name, got, want)
		}
		if loc := resp.Header.Get("Location"); loc != want.URL {
			t.Errorf("CreateChannel %s on %s: Location %q, want %q", newChannel, o.Name, loc, want.URL)
		}
	}

	url := osnURL(info.Orderers[0].AdminAddress)
	for _, tc := range []struct {
		what   string
		block  *cb.Block
		status int
		msg    string
	}{
		{"again", genesis, http.StatusMethodNotAllowed, "already exists"},
		{"with an empty block", &cb.Block{}, http.StatusBadRequest, "cannot join"},
	} {
		resp, err := channel.CreateChannel(url, tc.block, osn.roots, osn.cert)
		if err != nil {
			t.Fatalf("CreateChannel %s: %v", tc.what, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error string `json:"error"`
		}
		if resp.StatusCode != tc.status || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, tc.msg) {
			t.Errorf("CreateChannel %s answered %s %s, want %d and a JSON error containing %q", tc.what, resp.Status, body, tc.status, tc.msg)
		}
	}
}

// configBlockFromOrderer is the SDK's GetConfigBlockFromOrderer as org's
// admin, with the envelope bound to the TLS certificate conn presents.
func configBlockFromOrderer(ctx context.Context, t *testing.T, conn *grpc.ClientConn, org *orgAdmin, orderer, ch string, tlsCert tls.Certificate) *cb.Block {
	t.Helper()
	b, err := channel.GetConfigBlockFromOrderer(ctx, conn, org.id, ch, tlsCert)
	if err != nil {
		t.Fatalf("GetConfigBlockFromOrderer %s from %s as %s admin: %v", ch, orderer, org.mspID, err)
	}
	return b
}

// joinPeers joins each organisation's peer to the new channel with the SDK's
// JoinChannel as its admin, after checking that Org1's user1 may not and
// before checking that a second join is refused.
func joinPeers(ctx context.Context, t *testing.T, info *networkInfo, orgs []*orgAdmin, genesis *cb.Block) {
	t.Helper()
	user := signingIdentity(t, info, 0, "user1")
	if err := channel.JoinChannel(ctx, orgs[0].conn, user, genesis); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("JoinChannel %s as Org1MSP user1: %v, want access denied (not an admin)", newChannel, err)
	}
	if chs := peerChannels(ctx, t, orgs[0]); !slices.Equal(chs, []string{info.Channel}) {
		t.Errorf("after a refused join, Org1MSP's peer lists channels %v, want [%s]", chs, info.Channel)
	}
	for _, org := range orgs {
		if err := channel.JoinChannel(ctx, org.conn, org.id, genesis); err != nil {
			t.Fatalf("JoinChannel %s on %s's peer: %v", newChannel, org.mspID, err)
		}
	}
	if err := channel.JoinChannel(ctx, orgs[0].conn, orgs[0].id, genesis); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("JoinChannel %s a second time on Org1MSP's peer: %v, want ledger already exists", newChannel, err)
	}
}

// checkPeerChannels checks what org's peer reports with ListChannelOnPeer,
// GetConfigBlock and GetBlockChainInfo on both channels, right after it
// joined the new one: mychannel's config block is the one the orderers
// return (mychannelConfig), the new channel's is its genesis block and it
// holds that block alone.
func checkPeerChannels(ctx context.Context, t *testing.T, org *orgAdmin, mychannel string, genesis, mychannelConfig *cb.Block) {
	t.Helper()
	want := []string{newChannel, mychannel}
	sort.Strings(want)
	if chs := peerChannels(ctx, t, org); !slices.Equal(chs, want) {
		t.Errorf("ListChannelOnPeer on %s's peer = %v, want %v", org.mspID, chs, want)
	}
	where := " on " + org.mspID + "'s peer"

	b, err := channel.GetConfigBlock(ctx, org.conn, org.id, newChannel)
	if err != nil {
		t.Fatalf("GetConfigBlock %s%s: %v", newChannel, where, err)
	}
	checkSameBlock(t, "GetConfigBlock "+newChannel+where, b, genesis)
	b, err = channel.GetConfigBlock(ctx, org.conn, org.id, mychannel)
	if err != nil {
		t.Fatalf("GetConfigBlock %s%s: %v", mychannel, where, err)
	}
	checkConfigBlock(t, "GetConfigBlock "+mychannel+where, b, mychannel)
	checkSameBlock(t, "GetConfigBlock "+mychannel+where, b, mychannelConfig)

	genesisHash := blockHeaderHash(t, genesis.GetHeader())
	ci, err := channel.GetBlockChainInfo(ctx, org.conn, org.id, newChannel)
	if err != nil {
		t.Fatalf("GetBlockChainInfo %s%s: %v", newChannel, where, err)
	}
	if ci.GetHeight() != 1 || !bytes.Equal(ci.GetCurrentBlockHash(), genesisHash) || len(ci.GetPreviousBlockHash()) != 0 {
		t.Errorf("GetBlockChainInfo %s%s = {height %d current %x previous %x}, want {height 1 current %x previous none}",
			newChannel, where, ci.GetHeight(), ci.GetCurrentBlockHash(), ci.GetPreviousBlockHash(), genesisHash)
	}
	ci, err = channel.GetBlockChainInfo(ctx, org.conn, org.id, mychannel)
	if err != nil {
		t.Fatalf("GetBlockChainInfo %s%s: %v", mychannel, where, err)
	}
	// mychannel holds its genesis block and the sample chaincode's
	// lifecycle transactions.
	if ci.GetHeight() < 2 || len(ci.GetCurrentBlockHash()) != sha256.Size || len(ci.GetPreviousBlockHash()) != sha256.Size {
		t.Errorf("GetBlockChainInfo %s%s = {height %d current %x previous %x}, want height ≥ 2 and both hashes",
			mychannel, where, ci.GetHeight(), ci.GetCurrentBlockHash(), ci.GetPreviousBlockHash())
	}
}

// orderOnNewChannel checks that the new channel orders and commits: an
// approval sent through Org1's gateway (which learnt the channel when its
// peer joined it) is ordered by the new channel's Raft cluster into block 1,
// which every orderer holds and both peers pull and commit on top of the
// genesis block, whose config block stays the genesis block. Until the
// cluster has elected a leader the orderers refuse the transaction with
// SERVICE_UNAVAILABLE, as Fabric's do, and nothing is ordered: an operator's
// script retries.
func orderOnNewChannel(ctx context.Context, t *testing.T, info *networkInfo, orgs []*orgAdmin, osn *ordererAdmin, genesis *cb.Block) {
	t.Helper()
	probe := &chaincode.Definition{ChannelName: newChannel, Name: "adminsdkprobe", Version: "1.0", Sequence: 1}
	waitFor(ctx, t, "Approve on "+newChannel+" through Org1MSP's gateway", func() (bool, string) {
		err := orgs[0].gateway.Approve(ctx, probe)
		if err != nil && !strings.Contains(err.Error(), "SERVICE_UNAVAILABLE") {
			t.Fatalf("Approve on %s through Org1MSP's gateway: %v", newChannel, err)
		}
		return err == nil, fmt.Sprint(err)
	})
	for _, o := range info.Orderers {
		waitFor(ctx, t, newChannel+" height 2 on "+o.Name, func() (bool, string) {
			got := osn.channelInfo(t, osnURL(o.AdminAddress)+"/participation/v1/channels/"+newChannel)
			return got.Height == 2, fmt.Sprintf("%+v", got)
		})
	}
	genesisHash := blockHeaderHash(t, genesis.GetHeader())
	for _, org := range orgs {
		waitFor(ctx, t, newChannel+" height 2 on "+org.mspID+"'s peer", func() (bool, string) {
			ci, err := channel.GetBlockChainInfo(ctx, org.conn, org.id, newChannel)
			if err != nil {
				return false, err.Error()
			}
			return ci.GetHeight() == 2 && bytes.Equal(ci.GetPreviousBlockHash(), genesisHash),
				fmt.Sprintf("height %d previous %x", ci.GetHeight(), ci.GetPreviousBlockHash())
		})
		b, err := channel.GetConfigBlock(ctx, org.conn, org.id, newChannel)
		if err != nil {
			t.Fatalf("GetConfigBlock %s on %s's peer: %v", newChannel, org.mspID, err)
		}
		checkSameBlock(t, "GetConfigBlock "+newChannel+" on "+org.mspID+"'s peer after block 1", b, genesis)
	}
}

// checkDiscovery runs the discovery package's PeerMembershipQuery on Org1's
// peer. A request that claims a TLS certificate hash is answered only on a
// connection presenting that certificate; one that claims none (the SDK's
// default) is answered as Fabric's peers answer it, which never check the
// binding. Org1's admin gets the peers of both organisations on both channels
// (on the new one once each peer has learnt the other joined it and committed
// block 1), while an identity that merely claims Org1MSP gets no members
// (access denied, which the SDK reports as an empty result).
func checkDiscovery(ctx context.Context, t *testing.T, info *networkInfo, orgs []*orgAdmin, org1TLS tls.Certificate) {
	t.Helper()
	waitFor(ctx, t, "discovery without a TLS binding, as against Fabric", func() (bool, string) {
		res, err := discovery.NewPeer(orgs[0].conn, orgs[0].id).PeerMembershipQuery(ctx, info.Channel, nil)
		if err != nil {
			t.Fatalf("PeerMembershipQuery claiming no TLS hash: %v", err)
		}
		why := checkMembers(info, res, info.Channel, 2)
		return why == "", why
	})
	hash := sha256.Sum256(org1TLS.Certificate[0])
	if _, err := discovery.NewPeer(orgs[0].conn, orgs[0].id, discovery.WithTLSClientCertificateHash(hash[:])).PeerMembershipQuery(ctx, info.Channel, nil); err == nil ||
		!strings.Contains(err.Error(), "client didn't send a TLS certificate") {
		t.Errorf("PeerMembershipQuery claiming a TLS hash without a client certificate: %v, want \"client didn't send a TLS certificate\"", err)
	}
	conn := dialPeerWithCert(t, info, 0, org1TLS)
	other := sha256.Sum256([]byte("another certificate"))
	if _, err := discovery.NewPeer(conn, orgs[0].id, discovery.WithTLSClientCertificateHash(other[:])).PeerMembershipQuery(ctx, info.Channel, nil); err == nil ||
		!strings.Contains(err.Error(), "doesn't match") {
		t.Errorf("PeerMembershipQuery claiming another certificate's hash: %v, want a hash mismatch", err)
	}

	disc := discovery.NewPeer(conn, orgs[0].id, discovery.WithTLSClientCertificateHash(hash[:]))
	for _, ch := range []string{info.Channel, newChannel} {
		waitFor(ctx, t, "discovery of both organisations' peers on "+ch, func() (bool, string) {
			res, err := disc.PeerMembershipQuery(ctx, ch, nil)
			if err != nil {
				t.Fatalf("PeerMembershipQuery %s: %v", ch, err)
			}
			why := checkMembers(info, res, ch, 2)
			return why == "", why
		})
	}

	key := selfSignedKey(t)
	stranger, err := adminid.NewPrivateKeySigningIdentity("Org1MSP", selfSignedCertWithKey(t, "stranger", key), key)
	if err != nil {
		t.Fatal(err)
	}
	res, err := discovery.NewPeer(conn, stranger, discovery.WithTLSClientCertificateHash(hash[:])).PeerMembershipQuery(ctx, info.Channel, nil)
	if err == nil && res != nil {
		t.Errorf("PeerMembershipQuery by a self-signed identity claiming Org1MSP = %v, want access denied", res)
	}
}

// checkChannels checks that ListChannel on one orderer lists exactly the
// channels want, with no system channel, and that the URL each entry names
// answers that channel's details: active, the orderer a consenter of it.
func (a *ordererAdmin) checkChannels(t *testing.T, name, url string, want ...string) {
	t.Helper()
	list, err := channel.ListChannel(url, a.roots, a.cert)
	if err != nil {
		t.Fatalf("ListChannel on %s: %v", name, err)
	}
	if list.SystemChannel != nil {
		t.Errorf("ListChannel on %s: systemChannel %v, want null", name, list.SystemChannel)
	}
	var got []string
	for _, ch := range list.Channels {
		got = append(got, ch.Name)
		if ch.URL != "/participation/v1/channels/"+ch.Name {
			t.Errorf("ListChannel on %s: channel %s has URL %q", name, ch.Name, ch.URL)
			continue
		}
		info := a.channelInfo(t, url+ch.URL)
		if info.Name != ch.Name || info.URL != ch.URL || info.Status != "active" || info.ConsensusRelation != "consenter" || info.Height < 1 {
			t.Errorf("%s%s on %s = %+v, want channel %s active, consenter, height ≥ 1", url, ch.URL, name, info, ch.Name)
		}
	}
	sort.Strings(got)
	want = slices.Clone(want)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("ListChannel on %s lists %v, want %v", name, got, want)
	}
}

// channelInfo reads one channel's details from the participation API (the
// SDK has no call for it), with the same mutual TLS as the SDK.
func (a *ordererAdmin) channelInfo(t *testing.T, url string) participationInfo {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: a.roots, Certificates: []tls.Certificate{a.cert}, MinVersion: tls.VersionTLS12,
	}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return readParticipationInfo(t, resp, http.StatusOK)
}

// readParticipationInfo decodes a participation API answer with the given
// status, and closes it.
func readParticipationInfo(t *testing.T, resp *http.Response, status int) participationInfo {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("%s %s answered %s: %s", resp.Request.Method, resp.Request.URL, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", resp.Request.Method, resp.Request.URL, ct)
	}
	var info participationInfo
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatalf("%s %s: %v: %s", resp.Request.Method, resp.Request.URL, err, body)
	}
	return info
}

// peerChannels lists the channels of the organisation's peer with
// ListChannelOnPeer, sorted.
func peerChannels(ctx context.Context, t *testing.T, org *orgAdmin) []string {
	t.Helper()
	chs, err := channel.ListChannelOnPeer(ctx, org.conn, org.id)
	if err != nil {
		t.Fatalf("ListChannelOnPeer on %s's peer: %v", org.mspID, err)
	}
	var ids []string
	for _, ch := range chs {
		ids = append(ids, ch.GetChannelId())
	}
	sort.Strings(ids)
	return ids
}

// checkMembers explains how a PeerMembershipQuery result on channel ch
// differs from the network's peers (every organisation's peers by endpoint
// and identity, each with a ledger height of at least minHeight), or
// returns "".
func checkMembers(info *networkInfo, res *dpb.PeerMembershipResult, ch string, minHeight uint64) string {
	if len(res.GetPeersByOrg()) != len(info.Organizations) {
		return fmt.Sprintf("%s: peers of %d organisations, want %d: %v", ch, len(res.GetPeersByOrg()), len(info.Organizations), res)
	}
	for _, o := range info.Organizations {
		got := res.GetPeersByOrg()[o.MSPID].GetPeers()
		if len(got) != len(o.Peers) {
			return fmt.Sprintf("%s: %d peers of %s, want %d", ch, len(got), o.MSPID, len(o.Peers))
		}
		var endpoints []string
		for _, p := range got {
			sid := &mspproto.SerializedIdentity{}
			if err := proto.Unmarshal(p.GetIdentity(), sid); err != nil || sid.GetMspid() != o.MSPID {
				return fmt.Sprintf("%s: a peer of %s has identity of MSP %q (%v)", ch, o.MSPID, sid.GetMspid(), err)
			}
			alive := &gpb.GossipMessage{}
			if err := proto.Unmarshal(p.GetMembershipInfo().GetPayload(), alive); err != nil {
				return fmt.Sprintf("%s: a peer of %s has membership info that is no gossip message: %v", ch, o.MSPID, err)
			}
			endpoints = append(endpoints, alive.GetAliveMsg().GetMembership().GetEndpoint())
			state := &gpb.GossipMessage{}
			if err := proto.Unmarshal(p.GetStateInfo().GetPayload(), state); err != nil {
				return fmt.Sprintf("%s: a peer of %s has state info that is no gossip message: %v", ch, o.MSPID, err)
			}
			if h := state.GetStateInfo().GetProperties().GetLedgerHeight(); h < minHeight {
				return fmt.Sprintf("%s: peer %s reports ledger height %d, want ≥ %d", ch, alive.GetAliveMsg().GetMembership().GetEndpoint(), h, minHeight)
			}
		}
		var want []string
		for _, p := range o.Peers {
			want = append(want, p.Address)
		}
		sort.Strings(endpoints)
		sort.Strings(want)
		if !slices.Equal(endpoints, want) {
			return fmt.Sprintf("%s: peers of %s at %v, want %v", ch, o.MSPID, endpoints, want)
		}
	}
	return ""
}

// checkConfigBlock checks that b is a config block of channel ch.
func checkConfigBlock(t *testing.T, what string, b *cb.Block, ch string) {
	t.Helper()
	if len(b.GetData().GetData()) != 1 {
		t.Errorf("%s: block %d has %d transactions, want one config transaction", what, b.GetHeader().GetNumber(), len(b.GetData().GetData()))
		return
	}
	env := &cb.Envelope{}
	payload := &cb.Payload{}
	chdr := &cb.ChannelHeader{}
	cfg := &cb.ConfigEnvelope{}
	if err := proto.Unmarshal(b.GetData().GetData()[0], env); err != nil {
		t.Errorf("%s: %v", what, err)
	} else if err := proto.Unmarshal(env.GetPayload(), payload); err != nil {
		t.Errorf("%s: %v", what, err)
	} else if err := proto.Unmarshal(payload.GetHeader().GetChannelHeader(), chdr); err != nil {
		t.Errorf("%s: %v", what, err)
	} else if err := proto.Unmarshal(payload.GetData(), cfg); err != nil {
		t.Errorf("%s: %v", what, err)
	} else if chdr.GetType() != int32(cb.HeaderType_CONFIG) || chdr.GetChannelId() != ch || cfg.GetConfig().GetChannelGroup() == nil {
		t.Errorf("%s: block %d holds a transaction of type %s on channel %q, want a config of channel %s",
			what, b.GetHeader().GetNumber(), cb.HeaderType(chdr.GetType()), chdr.GetChannelId(), ch)
	}
}

// checkSameBlock checks that b is the block want: same header and data.
func checkSameBlock(t *testing.T, what string, b, want *cb.Block) {
	t.Helper()
	if !proto.Equal(b.GetHeader(), want.GetHeader()) || !proto.Equal(b.GetData(), want.GetData()) {
		t.Errorf("%s returned block %d (%d transactions, data hash %x), want block %d (%d transactions, data hash %x)",
			what, b.GetHeader().GetNumber(), len(b.GetData().GetData()), b.GetHeader().GetDataHash(),
			want.GetHeader().GetNumber(), len(want.GetData().GetData()), want.GetHeader().GetDataHash())
	}
}

// blockHeaderHash is Fabric's block hash: SHA-256 over the ASN.1 DER
// sequence (number, previous hash, data hash).
func blockHeaderHash(t *testing.T, h *cb.BlockHeader) []byte {
	t.Helper()
	der, err := asn1.Marshal(struct {
		Number       *big.Int
		PreviousHash []byte
		DataHash     []byte
	}{new(big.Int).SetUint64(h.GetNumber()), h.GetPreviousHash(), h.GetDataHash()})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return sum[:]
}

// genesisBlock builds the genesis block of a new channel of the network's
// organisations and orderers with `cairn channel genesis`, from the network
// folder's description and crypto material, as an operator would.
func genesisBlock(ctx context.Context, t *testing.T, info *networkInfo, name string) *cb.Block {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".block")
	cmd := exec.CommandContext(ctx, cairnBin, "channel", "genesis",
		"--config", filepath.Join(info.Dir, "network.yaml"), "--crypto", filepath.Join(info.Dir, "crypto"),
		"--channel", name, "--out", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cairn channel genesis: %v\n%s", err, msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	b := &cb.Block{}
	if err := proto.Unmarshal(raw, b); err != nil {
		t.Fatalf("genesis block of %s: %v", name, err)
	}
	if n := b.GetHeader().GetNumber(); n != 0 {
		t.Fatalf("cairn channel genesis wrote block %d, want 0", n)
	}
	checkConfigBlock(t, "cairn channel genesis", b, name)
	return b
}

// osnURL is the base URL of an orderer's channel participation API.
func osnURL(adminAddress string) string { return "https://" + adminAddress }

// adminTLSCert loads the TLS client certificate of the administrator of the
// organisation whose TLS CA certificate is tlsRootCert, from the network
// folder's crypto material (cryptogen's layout, as in Fabric:
// <org>/tlsca/tlsca.<domain>-cert.pem and
// <org>/users/Admin@<domain>/tls/client.{crt,key}).
func adminTLSCert(t *testing.T, tlsRootCert string) tls.Certificate {
	t.Helper()
	orgDir := filepath.Dir(filepath.Dir(tlsRootCert))
	dir := filepath.Join(orgDir, "users", "Admin@"+filepath.Base(orgDir), "tls")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	if err != nil {
		t.Fatalf("admin TLS certificate: %v", err)
	}
	return cert
}

// signingIdentity is one of the organisation's users from network.json as
// the SDK's signing identity.
func signingIdentity(t *testing.T, info *networkInfo, org int, user string) adminid.SigningIdentity {
	t.Helper()
	o := info.Organizations[org]
	cert, err := adminid.ReadCertificate(o.Users[user].Cert)
	if err != nil {
		t.Fatal(err)
	}
	key, err := adminid.ReadPrivateKey(o.Users[user].Key)
	if err != nil {
		t.Fatal(err)
	}
	id, err := adminid.NewPrivateKeySigningIdentity(o.MSPID, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func certPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		t.Fatalf("%s holds no PEM certificate", path)
	}
	return pool
}

// dialOrderer opens a TLS connection to the i-th orderer presenting cert,
// closed when the test ends.
func dialOrderer(t *testing.T, info *networkInfo, i int, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	o := info.Orderers[i]
	conn, err := grpc.NewClient(o.Address, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: certPool(t, o.TLSRootCert), Certificates: []tls.Certificate{cert}, ServerName: o.Name, MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// dialPeerWithCert opens a TLS connection to the organisation's first peer
// presenting cert, closed when the test ends.
func dialPeerWithCert(t *testing.T, info *networkInfo, org int, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	p := info.Organizations[org].Peers[0]
	conn, err := grpc.NewClient(p.Address, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: certPool(t, p.TLSRootCert), Certificates: []tls.Certificate{cert}, ServerName: p.Name, MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// selfSignedTLSCert is a TLS client certificate from a CA of its own, which
// no node of the network trusts.
func selfSignedTLSCert(t *testing.T) tls.Certificate {
	t.Helper()
	key := selfSignedKey(t)
	cert := selfSignedCertWithKey(t, "intruder", key)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

func selfSignedKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func selfSignedCertWithKey(t *testing.T, cn string, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
