package cryptogen

import "path/filepath"

// File and folder names inside a Fabric MSP folder and a TLS folder. They are
// fixed by Fabric's MSP loader and by the habits of Fabric operators, so they
// are spelled out once here and nowhere else.
const (
	// KeyFileName is the private key's name in a keystore folder and in the
	// ca/ and tlsca/ folders, as cryptogen names it since Fabric 2.0.
	KeyFileName = "priv_sk"
	// NodeOUsFileName is the NodeOUs configuration of an MSP folder.
	NodeOUsFileName = "config.yaml"
	// AdminUser is the short name of the administrator every organisation
	// gets, whose full name is Admin@<domain>.
	AdminUser = "Admin"
)

// Layout computes where Generate puts each file below Root, in the folder
// shape Fabric's cryptogen writes. Code that reads the material (network
// bootstrap, peer and orderer start-up) uses these helpers instead of joining
// paths itself, so the shape lives in one place.
//
// peerOrg selects the application tree (peerOrganizations/) when true and the
// ordering tree (ordererOrganizations/) when false; domain is the
// organisation's domain, e.g. "org1.example.com".
type Layout struct {
	// Root is the output folder given to Generate.
	Root string
}

// OrgsDir is the folder holding every organisation of one kind:
// Root/peerOrganizations or Root/ordererOrganizations.
func (l Layout) OrgsDir(peerOrg bool) string {
	if peerOrg {
		return filepath.Join(l.Root, "peerOrganizations")
	}
	return filepath.Join(l.Root, "ordererOrganizations")
}

// OrgDir is one organisation's folder, e.g. Root/peerOrganizations/org1.example.com.
func (l Layout) OrgDir(peerOrg bool, domain string) string {
	return filepath.Join(l.OrgsDir(peerOrg), domain)
}

// CADir holds the organisation's signing CA: its certificate and priv_sk.
func (l Layout) CADir(peerOrg bool, domain string) string {
	return filepath.Join(l.OrgDir(peerOrg, domain), "ca")
}

// CACertPath is the signing CA certificate, ca/ca.<domain>-cert.pem. It issues
// every MSP (enrollment) certificate of the organisation.
func (l Layout) CACertPath(peerOrg bool, domain string) string {
	return filepath.Join(l.CADir(peerOrg, domain), certFileName(caName(domain)))
}

// CAKeyPath is the signing CA private key, ca/priv_sk.
func (l Layout) CAKeyPath(peerOrg bool, domain string) string {
	return filepath.Join(l.CADir(peerOrg, domain), KeyFileName)
}

// TLSCADir holds the organisation's TLS CA: its certificate and priv_sk.
func (l Layout) TLSCADir(peerOrg bool, domain string) string {
	return filepath.Join(l.OrgDir(peerOrg, domain), "tlsca")
}

// TLSCACertPath is the TLS CA certificate, tlsca/tlsca.<domain>-cert.pem. It
// issues every TLS certificate of the organisation; peers and orderers of
// other organisations trust it to authenticate this one's TLS connections.
func (l Layout) TLSCACertPath(peerOrg bool, domain string) string {
	return filepath.Join(l.TLSCADir(peerOrg, domain), certFileName(tlsCAName(domain)))
}

// TLSCAKeyPath is the TLS CA private key, tlsca/priv_sk.
func (l Layout) TLSCAKeyPath(peerOrg bool, domain string) string {
	return filepath.Join(l.TLSCADir(peerOrg, domain), KeyFileName)
}

// OrgMSPDir is the organisation's verifying MSP (no keys): the folder whose
// contents go into the channel configuration for this organisation.
func (l Layout) OrgMSPDir(peerOrg bool, domain string) string {
	return filepath.Join(l.OrgDir(peerOrg, domain), "msp")
}

// NodeDir is one peer's or orderer's folder, e.g.
// Root/peerOrganizations/org1.example.com/peers/peer0.org1.example.com.
// fullName is the node's full name (netconfig.Node.FullName).
func (l Layout) NodeDir(peerOrg bool, domain, fullName string) string {
	kind := "orderers"
	if peerOrg {
		kind = "peers"
	}
	return filepath.Join(l.OrgDir(peerOrg, domain), kind, fullName)
}

// NodeMSPDir is a node's local MSP, the folder a peer or orderer signs with.
func (l Layout) NodeMSPDir(peerOrg bool, domain, fullName string) string {
	return filepath.Join(l.NodeDir(peerOrg, domain, fullName), "msp")
}

// NodeSignCertPath is a node's enrollment certificate, msp/signcerts/<fullName>-cert.pem.
func (l Layout) NodeSignCertPath(peerOrg bool, domain, fullName string) string {
	return filepath.Join(l.NodeMSPDir(peerOrg, domain, fullName), "signcerts", certFileName(fullName))
}

// NodeKeyPath is a node's enrollment private key, msp/keystore/priv_sk.
func (l Layout) NodeKeyPath(peerOrg bool, domain, fullName string) string {
	return filepath.Join(l.NodeMSPDir(peerOrg, domain, fullName), "keystore", KeyFileName)
}

// NodeTLSDir is a node's TLS folder: ca.crt, server.crt, server.key.
func (l Layout) NodeTLSDir(peerOrg bool, domain, fullName string) string {
	return filepath.Join(l.NodeDir(peerOrg, domain, fullName), "tls")
}

// NodeTLSCertPath is a node's TLS certificate, tls/server.crt. It is valid for
// both server and client authentication: orderers present it as their client
// certificate to other orderers and it is their Raft consenter certificate.
func (l Layout) NodeTLSCertPath(peerOrg bool, domain, fullName string) string {
	return filepath.Join(l.NodeTLSDir(peerOrg, domain, fullName), "server.crt")
}

// NodeTLSKeyPath is a node's TLS private key, tls/server.key.
func (l Layout) NodeTLSKeyPath(peerOrg bool, domain, fullName string) string {
	return filepath.Join(l.NodeTLSDir(peerOrg, domain, fullName), "server.key")
}

// NodeTLSCACertPath is the copy of the organisation's TLS CA certificate in a
// node's TLS folder, tls/ca.crt.
func (l Layout) NodeTLSCACertPath(peerOrg bool, domain, fullName string) string {
	return filepath.Join(l.NodeTLSDir(peerOrg, domain, fullName), "ca.crt")
}

// UserDir is one user's folder, users/<user>@<domain>. user is the short name
// as listed in the network description ("User1"), or "Admin" for the
// organisation's administrator.
func (l Layout) UserDir(peerOrg bool, domain, user string) string {
	return filepath.Join(l.OrgDir(peerOrg, domain), "users", UserName(user, domain))
}

// UserMSPDir is a user's local MSP, the folder a client application or an
// admin command signs with.
func (l Layout) UserMSPDir(peerOrg bool, domain, user string) string {
	return filepath.Join(l.UserDir(peerOrg, domain, user), "msp")
}

// UserSignCertPath is a user's enrollment certificate, msp/signcerts/<user>@<domain>-cert.pem.
func (l Layout) UserSignCertPath(peerOrg bool, domain, user string) string {
	return filepath.Join(l.UserMSPDir(peerOrg, domain, user), "signcerts", certFileName(UserName(user, domain)))
}

// UserKeyPath is a user's enrollment private key, msp/keystore/priv_sk.
func (l Layout) UserKeyPath(peerOrg bool, domain, user string) string {
	return filepath.Join(l.UserMSPDir(peerOrg, domain, user), "keystore", KeyFileName)
}

// UserTLSDir is a user's TLS folder: ca.crt, client.crt, client.key.
func (l Layout) UserTLSDir(peerOrg bool, domain, user string) string {
	return filepath.Join(l.UserDir(peerOrg, domain, user), "tls")
}

// UserTLSCertPath is a user's TLS client certificate, tls/client.crt.
func (l Layout) UserTLSCertPath(peerOrg bool, domain, user string) string {
	return filepath.Join(l.UserTLSDir(peerOrg, domain, user), "client.crt")
}

// UserTLSKeyPath is a user's TLS private key, tls/client.key.
func (l Layout) UserTLSKeyPath(peerOrg bool, domain, user string) string {
	return filepath.Join(l.UserTLSDir(peerOrg, domain, user), "client.key")
}

// UserTLSCACertPath is the copy of the organisation's TLS CA certificate in a
// user's TLS folder, tls/ca.crt.
func (l Layout) UserTLSCACertPath(peerOrg bool, domain, user string) string {
	return filepath.Join(l.UserTLSDir(peerOrg, domain, user), "ca.crt")
}

// UserName is a user's full name and certificate common name, <user>@<domain>,
// e.g. "Admin@org1.example.com".
func UserName(user, domain string) string { return user + "@" + domain }

func caName(domain string) string    { return "ca." + domain }
func tlsCAName(domain string) string { return "tlsca." + domain }

// certFileName follows cryptogen: a certificate is named after its subject.
func certFileName(name string) string { return name + "-cert.pem" }
