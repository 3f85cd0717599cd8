package localnet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"

	"github.com/cairn-ledger/cairn/chaincode/basic"
	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
	"github.com/cairn-ledger/cairn/internal/ccdeploy"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// joinOrderers creates the channel on every orderer through the channel
// participation API, authenticating with the orderer organisation admin's TLS
// client certificate, as osnadmin does.
func (n *Network) joinOrderers(ctx context.Context, genesis []byte) error {
	l := n.layout()
	for _, org := range n.net.OrdererOrgs {
		tlsCfg, err := comm.ClientTLS([]string{l.TLSCACertPath(false, org.Domain)},
			l.UserTLSCertPath(false, org.Domain, cryptogen.AdminUser), l.UserTLSKeyPath(false, org.Domain, cryptogen.AdminUser), "")
		if err != nil {
			return err
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 30 * time.Second}
		for _, nd := range org.Orderers {
			url := fmt.Sprintf("https://%s:%d/participation/v1/channels", nd.Host, nd.AdminPort)
			if err := waitTCP(ctx, fmt.Sprintf("%s:%d", nd.Host, nd.AdminPort), 0); err != nil {
				return err
			}
			if err := PostConfigBlock(ctx, hc, url, genesis); err != nil {
				return fmt.Errorf("join %s to channel: %w", nd.FullName(org.Domain), err)
			}
		}
		hc.CloseIdleConnections()
	}
	return nil
}

// PostConfigBlock joins an orderer to a channel through the channel
// participation API at url (…/participation/v1/channels), as osnadmin's
// "channel join" does: a multipart form with the config block; hc carries the
// orderer admin's TLS client certificate. Anything but 201 Created is an
// error naming the API's answer.
func PostConfigBlock(ctx context.Context, hc *http.Client, url string, block []byte) error {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("config-block", "config.block")
	if err != nil {
		return err
	}
	if _, err := fw.Write(block); err != nil {
		return err
	}
	if err := mw.Close(); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("participation API answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// adminConn connects to a peer as its organisation's admin.
func (n *Network) adminConn(org netconfig.PeerOrg, nd netconfig.Node) (*grpc.ClientConn, *crypto.SigningIdentity, error) {
	l := n.layout()
	admin, err := crypto.LoadSigningIdentity(org.MSPID, l.UserMSPDir(true, org.Domain, cryptogen.AdminUser))
	if err != nil {
		return nil, nil, err
	}
	tlsCfg, err := comm.ClientTLS([]string{l.TLSCACertPath(true, org.Domain)},
		l.UserTLSCertPath(true, org.Domain, cryptogen.AdminUser), l.UserTLSKeyPath(true, org.Domain, cryptogen.AdminUser), nd.FullName(org.Domain))
	if err != nil {
		return nil, nil, err
	}
	conn, err := comm.Dial(nd.Address(), tlsCfg)
	if err != nil {
		return nil, nil, err
	}
	return conn, admin, nil
}

// invokeSystem sends a channel-less proposal to a system chaincode and
// returns the response payload.
func invokeSystem(ctx context.Context, conn *grpc.ClientConn, signer *crypto.SigningIdentity, cc string, args ...[]byte) ([]byte, error) {
	prop, _, err := envelope.NewProposal("", cc, args, nil, signer.Serialize())
	if err != nil {
		return nil, err
	}
	sp, err := envelope.SignProposal(prop, signer)
	if err != nil {
		return nil, err
	}
	resp, err := pb.NewEndorserClient(conn).ProcessProposal(ctx, sp)
	if err != nil {
		return nil, err
	}
	if resp.GetResponse().GetStatus() != 200 {
		return nil, fmt.Errorf("%s %s: status %d: %s", cc, args[0], resp.GetResponse().GetStatus(), resp.GetResponse().GetMessage())
	}
	return resp.Response.Payload, nil
}

// joinPeers joins every peer to the channel with cscc JoinChain, signed by
// the organisation's admin.
func (n *Network) joinPeers(ctx context.Context, genesis []byte) error {
	for _, org := range n.net.PeerOrgs {
		for _, nd := range org.Peers {
			conn, admin, err := n.adminConn(org, nd)
			if err != nil {
				return err
			}
			_, err = invokeSystem(ctx, conn, admin, "cscc", []byte("JoinChain"), genesis)
			conn.Close()
			if err != nil {
				return fmt.Errorf("join %s: %w", nd.FullName(org.Domain), err)
			}
		}
	}
	return nil
}

// deployBasic packages the sample chaincode, installs it on every peer,
// starts its process for each peer, and has internal/ccdeploy (the flow of
// `cairn chaincode deploy`) approve the definition for every organisation and
// commit it; then it waits until the chaincode answers on every peer.
func (n *Network) deployBasic(ctx context.Context) error {
	pkg, err := ccpackage.Golang(ChaincodeLabel, "github.com/cairn-ledger/cairn/chaincode/basic", basic.Source())
	if err != nil {
		return fmt.Errorf("package chaincode: %w", err)
	}
	cfg := ccdeploy.Config{Channel: n.net.Channel.Name}
	var conns []*grpc.ClientConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, org := range n.net.PeerOrgs {
		o := ccdeploy.Org{MSPID: org.MSPID}
		for _, nd := range org.Peers {
			conn, admin, err := n.adminConn(org, nd)
			if err != nil {
				return err
			}
			conns = append(conns, conn)
			o.Admin = admin
			o.Peers = append(o.Peers, ccdeploy.Peer{Name: nd.FullName(org.Domain), Conn: conn})
		}
		cfg.Orgs = append(cfg.Orgs, o)
	}
	d, err := ccdeploy.New(cfg)
	if err != nil {
		return err
	}
	// The processes need the package ID and the peers must know it before
	// the definition is committed, so install first; Deploy then finds the
	// package installed everywhere.
	packageID, err := d.Install(ctx, pkg)
	if err != nil {
		return fmt.Errorf("install chaincode basic: %w", err)
	}
	l := n.layout()
	for _, org := range n.net.PeerOrgs {
		for _, nd := range org.Peers {
			if err := n.startChaincode(org, nd, packageID, l); err != nil {
				return err
			}
		}
	}
	// No policy: the channel's /Channel/Application/Endorsement (MAJORITY of
	// the organisations), which gateways plan across organisations.
	if _, err := d.Deploy(ctx, ccdeploy.Request{Name: "basic", Version: "1.0", Package: pkg}); err != nil {
		return fmt.Errorf("deploy chaincode basic: %w", err)
	}
	return n.waitChaincode(ctx, "basic")
}

// startChaincode runs the sample chaincode as a process dialling one peer, with
// the CORE_* variables Fabric's shim reads.
func (n *Network) startChaincode(org netconfig.PeerOrg, nd netconfig.Node, packageID string, l cryptogen.Layout) error {
	full := nd.FullName(org.Domain)
	dir := filepath.Join(n.Dir, "chaincode", "basic."+full)
	if err := mkdir(dir); err != nil {
		return err
	}
	key, cert := filepath.Join(dir, "client.key.b64"), filepath.Join(dir, "client.crt.b64")
	if err := writeBase64(l.NodeTLSKeyPath(true, org.Domain, full), key); err != nil {
		return err
	}
	if err := writeBase64(l.NodeTLSCertPath(true, org.Domain, full), cert); err != nil {
		return err
	}
	p := &Process{
		Name: "basic." + full, Role: "chaincode", Org: org.MSPID,
		Args: []string{"chaincode", "run-sample", "basic", "--reconnect"},
		Env: n.runtimeEnv([]string{
			"CORE_CHAINCODE_ID_NAME=" + packageID,
			"CORE_PEER_ADDRESS=" + nd.Address(),
			"CORE_PEER_TLS_ENABLED=true",
			"CORE_PEER_TLS_ROOTCERT_FILE=" + l.TLSCACertPath(true, org.Domain),
			"CORE_TLS_CLIENT_KEY_PATH=" + key,
			"CORE_TLS_CLIENT_CERT_PATH=" + cert,
			"CORE_PEER_TLS_SERVERHOSTOVERRIDE=" + full,
		}),
		Log: filepath.Join(n.Dir, "logs", "basic."+full+".log"),
	}
	if err := start(n.opts.Binary, p); err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	return n.saveState()
}

// Gateway connects the official Fabric Gateway client to the first peer of an
// organisation as one of its users ("admin", "user1", ...).
func (n *Network) Gateway(orgIndex int, user string) (*client.Gateway, *grpc.ClientConn, error) {
	return ConnectGateway(n.Info, orgIndex, 0, user)
}

// ConnectGateway connects the Fabric Gateway client to a peer described in network.json.
func ConnectGateway(info *Info, orgIndex, peerIndex int, user string) (*client.Gateway, *grpc.ClientConn, error) {
	if orgIndex >= len(info.Organizations) || peerIndex >= len(info.Organizations[orgIndex].Peers) {
		return nil, nil, errors.New("no such organisation or peer")
	}
	org := info.Organizations[orgIndex]
	u, ok := org.Users[user]
	if !ok {
		return nil, nil, fmt.Errorf("organisation %s has no user %q", org.MSPID, user)
	}
	peer := org.Peers[peerIndex]
	certPEM, err := readFile(u.Cert)
	if err != nil {
		return nil, nil, err
	}
	cert, err := identity.CertificateFromPEM(certPEM)
	if err != nil {
		return nil, nil, err
	}
	id, err := identity.NewX509Identity(org.MSPID, cert)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := readFile(u.Key)
	if err != nil {
		return nil, nil, err
	}
	key, err := identity.PrivateKeyFromPEM(keyPEM)
	if err != nil {
		return nil, nil, err
	}
	sign, err := identity.NewPrivateKeySign(key)
	if err != nil {
		return nil, nil, err
	}
	rootPEM, err := readFile(peer.TLSRootCert)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	conn, err := comm.Dial(peer.Address, &tls.Config{RootCAs: pool, ServerName: peer.Name, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, nil, err
	}
	gw, err := client.Connect(id, client.WithSign(sign), client.WithClientConnection(conn),
		client.WithEvaluateTimeout(30*time.Second), client.WithEndorseTimeout(30*time.Second),
		client.WithSubmitTimeout(30*time.Second), client.WithCommitStatusTimeout(time.Minute))
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return gw, conn, nil
}

// waitChaincode waits until the chaincode answers an evaluation on every peer.
func (n *Network) waitChaincode(ctx context.Context, name string) error {
	for i, org := range n.net.PeerOrgs {
		for j := range org.Peers {
			if err := n.waitChaincodeOn(ctx, i, j, name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (n *Network) waitChaincodeOn(ctx context.Context, org, peer int, name string) error {
	gw, conn, err := ConnectGateway(n.Info, org, peer, "user1")
	if err != nil {
		return err
	}
	defer conn.Close()
	defer gw.Close()
	contract := gw.GetNetwork(n.net.Channel.Name).GetContract(name)
	for {
		_, err := contract.EvaluateWithContext(ctx, "GetAllAssets")
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("chaincode %s did not become ready on %s: %w", name, n.Info.Organizations[org].Peers[peer].Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readFile(path string) ([]byte, error) {
	raw, err := readFileRaw(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return raw, nil
}

// Describe renders the ready message `cairn network up` prints.
func (n *Network) Describe() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "channel %s with chaincode basic\n", n.Info.Channel)
	for _, o := range n.Info.Organizations {
		for _, p := range o.Peers {
			fmt.Fprintf(&b, "  peer     %-28s %s (%s)\n", p.Name, p.Address, o.MSPID)
		}
	}
	for _, o := range n.Info.Orderers {
		fmt.Fprintf(&b, "  orderer  %-28s %s (admin %s)\n", o.Name, o.Address, o.AdminAddress)
	}
	fmt.Fprintf(&b, "connection profile: %s\n", filepath.Join(n.Dir, InfoFile))
	fmt.Fprintf(&b, "use it with a Fabric Gateway SDK: connect to a peer's address (TLS server name = its name,\n")
	fmt.Fprintf(&b, "root = tlsRootCert) as users.user1, then submit to chaincode basic on channel %s, e.g. CreateAsset\n", n.Info.Channel)
	return b.String()
}
