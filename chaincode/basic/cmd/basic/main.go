// Command basic runs the asset-transfer-basic sample chaincode as a process
// that dials its peer, configured by the standard Fabric chaincode
// environment (see package github.com/cairn-ledger/cairn/chaincode/basic).
package main

import (
	"fmt"
	"os"

	"github.com/cairn-ledger/cairn/chaincode/basic"
)

func main() {
	if err := basic.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "basic chaincode:", err)
		os.Exit(1)
	}
}
