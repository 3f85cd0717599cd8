package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/chaincode/basic"
)

func newChaincodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "chaincode", Short: "Chaincode tools"}
	var reconnect bool
	run := &cobra.Command{
		Use:   "run-sample NAME",
		Short: "Run a sample chaincode shipped with cairn as a process that dials its peer (CORE_* variables as Fabric's shim)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "basic" {
				return errUnknownSample(args[0])
			}
			if !reconnect {
				return basic.Run()
			}
			return serveReconnecting(cmd)
		},
	}
	run.Flags().BoolVar(&reconnect, "reconnect", false, "dial the peer again whenever the connection ends (until SIGINT/SIGTERM), so the chaincode survives peer restarts")
	cmd.AddCommand(run)
	return cmd
}

// serveReconnecting keeps the chaincode registered with its peer across peer
// restarts: Fabric's peer relaunches chaincode itself, a local network's
// chaincode process has to come back on its own.
func serveReconnecting(cmd *cobra.Command) error {
	cfg, err := basic.ConfigFromEnv(os.Getenv, nil)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	backoff := 100 * time.Millisecond
	for {
		began := time.Now()
		err := basic.Serve(ctx, cfg)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "chaincode connection to %s ended (%v); reconnecting in %s\n", cfg.PeerAddress, err, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func errUnknownSample(name string) error {
	return fmt.Errorf("unknown sample chaincode %q (available: basic)", name)
}
