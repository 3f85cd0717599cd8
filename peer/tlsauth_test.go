package peer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/cairn-ledger/cairn/peer/internal/launcher"
)

// registered is a ChaincodeSupportServer that reports each stream it is
// handed and ends it.
type registered struct {
	pb.UnimplementedChaincodeSupportServer
	got chan struct{}
}

func (r registered) Register(pb.ChaincodeSupport_RegisterServer) error {
	r.got <- struct{}{}
	return nil
}

// TestClientCertificates: the peer's listener lets a client with a
// self-signed TLS certificate connect (Fabric tools send one), while
// chaincode registration needs a certificate from the peer's client roots.
func TestClientCertificates(t *testing.T) {
	serverCA, err := launcher.NewCA("server CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := serverCA.Issue("127.0.0.1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}
	ccCA, err := trustChaincodeCA(Config{Name: "peer0"}, serverTLS)
	if err != nil {
		t.Fatal(err)
	}
	if serverTLS.ClientAuth != tls.RequestClientCert {
		t.Fatalf("client auth %v, want RequestClientCert", serverTLS.ClientAuth)
	}

	got := make(chan struct{}, 1)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	pb.RegisterChaincodeSupportServer(gs, chaincodeSupportServer{ChaincodeSupportServer: registered{got: got}, roots: serverTLS.ClientCAs})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	defer gs.Stop()

	register := func(t *testing.T, client []tls.Certificate) error {
		t.Helper()
		// The server's identity is not under test (its test certificate
		// has no SAN).
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			InsecureSkipVerify: true, Certificates: client, MinVersion: tls.VersionTLS12,
		})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := pb.NewChaincodeSupportClient(conn).Register(ctx)
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}

	issuedPEM, issuedKey, err := ccCA.Issue("cc", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issued, err := tls.X509KeyPair(issuedPEM, issuedKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := register(t, []tls.Certificate{issued}); status.Code(err) != codes.OK && err.Error() != "EOF" {
		t.Fatalf("chaincode with a certificate of the chaincode CA: %v", err)
	}
	select {
	case <-got:
	default:
		t.Fatal("registration with a certificate of the chaincode CA did not reach the support")
	}

	for name, certs := range map[string][]tls.Certificate{"self-signed": {selfSigned(t)}, "none": nil} {
		err := register(t, certs)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s client certificate: %v, want PermissionDenied (the handshake itself must succeed)", name, err)
		}
	}
	select {
	case <-got:
		t.Fatal("a registration without a trusted certificate reached the support")
	default:
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "mallory"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
