package peer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/cairn-ledger/cairn/peer/internal/launcher"
)

// trustChaincodeCA creates the peer's chaincode CA and adds it to the client
// roots of the peer's TLS server, so that the chaincode processes the peer
// launches can present the certificates it issues them.
//
// The listener then requests client certificates without verifying them in
// the handshake, as Fabric's peer does when client authentication is not
// required: Fabric tools and SDKs that present a self-signed certificate
// (the discover CLI, older SDKs) must still reach the Endorser, Deliver,
// Gateway and Discovery services, which decide on signed messages and MSPs.
// The services that trust a TLS identity verify it themselves: chaincode
// registration (chaincodeSupportServer) and the membership exchange.
func trustChaincodeCA(cfg Config, serverTLS *tls.Config) (*launcher.CA, error) {
	ca, err := launcher.NewCA(cfg.Name+" chaincode CA", nil)
	if err != nil {
		return nil, err
	}
	if serverTLS.ClientCAs == nil {
		serverTLS.ClientCAs = x509.NewCertPool()
	}
	serverTLS.ClientCAs.AddCert(ca.Certificate())
	if serverTLS.ClientAuth != tls.RequireAndVerifyClientCert {
		serverTLS.ClientAuth = tls.RequestClientCert
	}
	return ca, nil
}

// chaincodeSupportServer admits a registering chaincode only with a TLS
// client certificate that chains to the peer's client roots (its
// organisation's TLS CAs and its chaincode CA): a chaincode process receives
// every proposal routed to its package, so it must be one the peer or its
// operator set up.
type chaincodeSupportServer struct {
	pb.ChaincodeSupportServer
	roots *x509.CertPool
}

func (s chaincodeSupportServer) Register(stream pb.ChaincodeSupport_RegisterServer) error {
	if err := verifyClientCert(stream, s.roots); err != nil {
		return status.Error(codes.PermissionDenied, fmt.Sprintf("chaincode registration refused: %v", err))
	}
	return s.ChaincodeSupportServer.Register(stream)
}

// verifyClientCert checks the client certificate of the stream's connection
// against roots, for client authentication.
func verifyClientCert(stream interface{ Context() context.Context }, roots *x509.CertPool) error {
	p, ok := grpcpeer.FromContext(stream.Context())
	if !ok {
		return errors.New("no connection information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return errors.New("no TLS client certificate")
	}
	certs := info.State.PeerCertificates
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("TLS client certificate %q: %w", certs[0].Subject.CommonName, err)
	}
	return nil
}
