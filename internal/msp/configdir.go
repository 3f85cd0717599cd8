package msp

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"gopkg.in/yaml.v3"
)

// configYAML is the config.yaml of a Fabric MSP folder.
type configYAML struct {
	OrganizationalUnitIdentifiers []ouYAML `yaml:"OrganizationalUnitIdentifiers"`
	NodeOUs                       *struct {
		Enable              bool    `yaml:"Enable"`
		ClientOUIdentifier  *ouYAML `yaml:"ClientOUIdentifier"`
		PeerOUIdentifier    *ouYAML `yaml:"PeerOUIdentifier"`
		AdminOUIdentifier   *ouYAML `yaml:"AdminOUIdentifier"`
		OrdererOUIdentifier *ouYAML `yaml:"OrdererOUIdentifier"`
	} `yaml:"NodeOUs"`
}

type ouYAML struct {
	Certificate                  string `yaml:"Certificate"`
	OrganizationalUnitIdentifier string `yaml:"OrganizationalUnitIdentifier"`
}

// LoadMSPConfigDir builds the verifying configuration of an MSP from a Fabric MSP
// folder, as Fabric's msp.GetVerifyingMspConfig does: cacerts/ (required),
// intermediatecerts/, admincerts/, tlscacerts/, tlsintermediatecerts/, crls/ and
// config.yaml (NodeOUs and OU identifiers, whose Certificate paths are relative
// to dir and are replaced by the PEM they name). Files without PEM blocks are
// skipped, as Fabric does; a file with several certificates yields one entry each.
func LoadMSPConfigDir(dir, mspID string) (*mspproto.FabricMSPConfig, error) {
	if mspID == "" {
		return nil, errors.New("load msp dir: MSP ID is empty")
	}
	wrap := func(err error) error { return fmt.Errorf("load msp dir %s: %w", dir, err) }
	roots, err := pemDir(filepath.Join(dir, "cacerts"))
	if err != nil {
		return nil, wrap(err)
	}
	if len(roots) == 0 {
		return nil, wrap(errors.New("no CA certificate in cacerts/"))
	}
	conf := &mspproto.FabricMSPConfig{
		Name:      mspID,
		RootCerts: roots,
		CryptoConfig: &mspproto.FabricCryptoConfig{
			SignatureHashFamily:            "SHA2",
			IdentityIdentifierHashFunction: "SHA256",
		},
	}
	for _, d := range []struct {
		sub string
		dst *[][]byte
	}{
		{"intermediatecerts", &conf.IntermediateCerts},
		{"admincerts", &conf.Admins},
		{"tlscacerts", &conf.TlsRootCerts},
		{"tlsintermediatecerts", &conf.TlsIntermediateCerts},
		{"crls", &conf.RevocationList},
	} {
		if *d.dst, err = pemDir(filepath.Join(dir, d.sub)); err != nil {
			return nil, wrap(err)
		}
	}

	raw, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if errors.Is(err, fs.ErrNotExist) {
		return conf, nil
	}
	if err != nil {
		return nil, wrap(err)
	}
	var cy configYAML
	if err := yaml.Unmarshal(raw, &cy); err != nil {
		return nil, wrap(fmt.Errorf("config.yaml: %w", err))
	}
	ouFrom := func(what string, o *ouYAML, certRequired bool) (*mspproto.FabricOUIdentifier, error) {
		out := &mspproto.FabricOUIdentifier{OrganizationalUnitIdentifier: o.OrganizationalUnitIdentifier}
		if o.Certificate == "" {
			if certRequired {
				return nil, fmt.Errorf("config.yaml: %s: Certificate is required", what)
			}
			return out, nil
		}
		p := o.Certificate
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("config.yaml: %s: %w", what, err)
		}
		if blk, _ := pem.Decode(b); blk == nil {
			return nil, fmt.Errorf("config.yaml: %s: %s holds no PEM certificate", what, p)
		}
		out.Certificate = b
		return out, nil
	}
	for i := range cy.OrganizationalUnitIdentifiers {
		ou, err := ouFrom(fmt.Sprintf("OrganizationalUnitIdentifiers[%d]", i), &cy.OrganizationalUnitIdentifiers[i], true)
		if err != nil {
			return nil, wrap(err)
		}
		conf.OrganizationalUnitIdentifiers = append(conf.OrganizationalUnitIdentifiers, ou)
	}
	if n := cy.NodeOUs; n != nil {
		conf.FabricNodeOus = &mspproto.FabricNodeOUs{Enable: n.Enable}
		for _, s := range []struct {
			name string
			in   *ouYAML
			out  **mspproto.FabricOUIdentifier
		}{
			{"ClientOUIdentifier", n.ClientOUIdentifier, &conf.FabricNodeOus.ClientOuIdentifier},
			{"PeerOUIdentifier", n.PeerOUIdentifier, &conf.FabricNodeOus.PeerOuIdentifier},
			{"AdminOUIdentifier", n.AdminOUIdentifier, &conf.FabricNodeOus.AdminOuIdentifier},
			{"OrdererOUIdentifier", n.OrdererOUIdentifier, &conf.FabricNodeOus.OrdererOuIdentifier},
		} {
			if s.in == nil {
				continue
			}
			if *s.out, err = ouFrom("NodeOUs."+s.name, s.in, false); err != nil {
				return nil, wrap(err)
			}
		}
	}
	return conf, nil
}

// pemDir returns every PEM block of the regular files in dir, each re-encoded as
// its own entry, in file-name order. A missing folder yields nothing.
func pemDir(dir string) ([][]byte, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	var out [][]byte
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var blocks [][]byte
		for rest := b; ; {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			blocks = append(blocks, pem.EncodeToMemory(blk))
		}
		if len(blocks) == 1 {
			// Keep the file as written, byte for byte, as Fabric does.
			blocks[0] = b
		}
		out = append(out, blocks...)
	}
	return out, nil
}
