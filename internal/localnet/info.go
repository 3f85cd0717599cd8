package localnet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// InfoFile is the connection profile written in the network folder.
const InfoFile = "network.json"

// Info is network.json: what an application needs to reach the network with a
// Fabric SDK. Paths are absolute.
type Info struct {
	Channel       string         `json:"channel"`
	Chaincodes    []string       `json:"chaincodes"`
	Organizations []Organization `json:"organizations"`
	Orderers      []Orderer      `json:"orderers"`
	// OrdererOrganizations name the orderer organisations and their admin,
	// whose TLS client certificate the channel participation API (osnadmin)
	// requires.
	OrdererOrganizations []OrdererOrganization `json:"ordererOrganizations"`
}

// OrdererOrganization is one orderer organisation.
type OrdererOrganization struct {
	MSPID string          `json:"mspId"`
	Users map[string]User `json:"users"`
}

// Organization is one application organisation.
type Organization struct {
	MSPID string          `json:"mspId"`
	Peers []Peer          `json:"peers"`
	Users map[string]User `json:"users"`
}

// Peer is one peer; Name is the TLS server name to use.
type Peer struct {
	Name        string `json:"name"`
	Address     string `json:"address"`
	TLSRootCert string `json:"tlsRootCert"`
}

// User is a client identity: enrollment certificate and private key files,
// and the TLS client certificate and key for mutual TLS.
type User struct {
	Cert    string `json:"cert"`
	Key     string `json:"key"`
	TLSCert string `json:"tlsCert"`
	TLSKey  string `json:"tlsKey"`
}

// Orderer is one orderer with its channel participation (admin) address.
type Orderer struct {
	Name         string `json:"name"`
	Address      string `json:"address"`
	AdminAddress string `json:"adminAddress"`
	TLSRootCert  string `json:"tlsRootCert"`
}

// LoadInfo reads DIR/network.json.
func LoadInfo(dir string) (*Info, error) {
	raw, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if err != nil {
		return nil, fmt.Errorf("read network profile: %w", err)
	}
	var info Info
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, fmt.Errorf("parse %s: %w", InfoFile, err)
	}
	return &info, nil
}

func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
