// Command shimcheck runs the shimcheck test chaincode, either dialling its
// peer or as an external service (see package
// github.com/cairn-ledger/cairn/chaincode/shimcheck).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairn-ledger/cairn/chaincode/shimcheck"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := shimcheck.Run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "shimcheck chaincode:", err)
		os.Exit(1)
	}
}
