// Command cairn is the single binary of Cairn: every node role and every admin
// command is a subcommand (see the cli package).
package main

import (
	"os"

	"github.com/cairn-ledger/cairn/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
