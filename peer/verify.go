package peer

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/blockverify"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/peer/internal/ledger"
)

// LedgerReport is the outcome of verifying one channel's ledger.
type LedgerReport struct {
	Channel       string `json:"channel"`
	Height        uint64 `json:"height"`
	LastBlockHash string `json:"lastBlockHash"`
	Transactions  int    `json:"transactions"`
	Valid         int    `json:"valid"`
	// StateDigest fingerprints the whole state; peers holding the same chain
	// have the same digest.
	StateDigest string `json:"stateDigest"`
	StateKeys   int    `json:"stateKeys"`
}

// VerifyLedgers checks every channel ledger under a (stopped) peer's data
// folder: each block's data hash, the hash chain, the orderer signatures
// against the BlockValidation policy in force, one validation code per
// transaction; and it computes the state digest. The first problem is returned
// as an error naming the channel and block.
func VerifyLedgers(dataDir string) ([]LedgerReport, error) {
	root := filepath.Join(dataDir, "ledgers")
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list ledgers in %s: %w", root, err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []LedgerReport
	for _, name := range names {
		r, err := verifyLedger(filepath.Join(root, name), name)
		if err != nil {
			return out, fmt.Errorf("channel %s: %w", name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func verifyLedger(dir, name string) (LedgerReport, error) {
	l, err := ledger.Open(ledger.Config{Dir: dir})
	if err != nil {
		return LedgerReport{}, err
	}
	defer l.Close()
	r := LedgerReport{Channel: name, Height: l.Height()}
	var (
		prev   []byte
		bundle *channelconfig.Bundle
	)
	for n := uint64(0); n < r.Height; n++ {
		b, err := l.Block(n)
		if err != nil {
			return r, fmt.Errorf("block %d: %w", n, err)
		}
		if b.Header.Number != n {
			return r, fmt.Errorf("block %d is stored as number %d", n, b.Header.Number)
		}
		if n > 0 && !bytes.Equal(b.Header.PreviousHash, prev) {
			return r, fmt.Errorf("block %d: previous hash %x does not match block %d's hash %x", n, b.Header.PreviousHash, n-1, prev)
		}
		if n > 0 {
			// The genesis block comes from the channel's creator, unsigned;
			// every later block must carry orderer signatures.
			signed, err := blockverify.SignedData(b)
			if err != nil {
				return r, err
			}
			pol, err := bundle.Policies().Policy("/Channel/Orderer/BlockValidation")
			if err != nil {
				return r, err
			}
			if err := pol.Evaluate(signed); err != nil {
				return r, fmt.Errorf("block %d signatures: %w", n, err)
			}
		}
		if block.IsConfig(b) {
			if bundle, err = channelconfig.FromBlock(b); err != nil {
				return r, fmt.Errorf("config block %d: %w", n, err)
			}
		}
		filter := block.TxFilter(b)
		if len(filter) != len(b.Data.Data) {
			return r, fmt.Errorf("block %d has %d validation codes for %d transactions", n, len(filter), len(b.Data.Data))
		}
		r.Transactions += len(filter)
		for _, c := range filter {
			if pb.TxValidationCode(c) == pb.TxValidationCode_VALID {
				r.Valid++
			}
		}
		prev = block.HeaderHash(b.Header)
	}
	r.LastBlockHash = hex.EncodeToString(prev)
	digest, keys, _, err := l.StateDigest()
	if err != nil {
		return r, err
	}
	r.StateDigest, r.StateKeys = hex.EncodeToString(digest), keys
	return r, nil
}
