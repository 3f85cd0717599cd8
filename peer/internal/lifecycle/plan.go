package lifecycle

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/protobuf/proto"
)

// RangeReader reads committed state by key range; the ledger's query
// executor satisfies it.
type RangeReader interface {
	GetStateRangeScanIterator(namespace, startKey, endKey string) (ResultsIterator, error)
}

// Definitions returns every chaincode definition committed on the channel,
// in name order: what the peer's membership advertises and the gateway
// plans endorsements for.
func Definitions(state RangeReader) ([]*ChaincodeDefinition, error) {
	// '0' is the byte after '/', so this scans exactly "definitions/...".
	it, err := state.GetStateRangeScanIterator(Namespace, definitionPrefix, strings.TrimSuffix(definitionPrefix, "/")+"0")
	if err != nil {
		return nil, fmt.Errorf("scan chaincode definitions: %w", err)
	}
	defer it.Close()
	var out []*ChaincodeDefinition
	for {
		kv, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("scan chaincode definitions: %w", err)
		}
		if kv == nil {
			return out, nil
		}
		def := &lb.CommitChaincodeDefinitionArgs{}
		if err := proto.Unmarshal(kv.Value, def); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, definitionOf(def))
	}
}

// PackageInstalled reports whether the package with this ID is installed in
// packageDir (Config.PackageDir of the peer's SCC).
func PackageInstalled(packageDir, packageID string) bool {
	name, ok := fileName(packageID)
	if !ok {
		return false
	}
	fi, err := os.Stat(filepath.Join(packageDir, name))
	return err == nil && fi.Mode().IsRegular()
}
