package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/chaincode/basic"
)

func newChaincodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "chaincode", Short: "Chaincode tools"}
	run := &cobra.Command{
		Use:   "run-sample NAME",
		Short: "Run a sample chaincode shipped with cairn as a process that dials its peer (CORE_* variables as Fabric's shim)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "basic":
				return basic.Run()
			}
			return errUnknownSample(args[0])
		},
	}
	cmd.AddCommand(run)
	return cmd
}

func errUnknownSample(name string) error {
	return fmt.Errorf("unknown sample chaincode %q (available: basic)", name)
}
