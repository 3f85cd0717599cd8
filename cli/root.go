// Package cli owns the cairn command tree (cobra): one file per command group,
// each a thin layer that reads flags and configuration files and calls the
// constructors of the roles and libraries. Nothing here holds state beyond one
// command's run.
package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/cairn-ledger/cairn/internal/logging"
)

// Version is the cairn release, reported by `cairn version` and /version.
const Version = "0.1.0-dev"

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	root := newRoot()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	return 0
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "cairn",
		Short:         "Cairn: a permissioned ledger that speaks Hyperledger Fabric's protocol",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newVersionCmd(),
		newCryptoCmd(),
		newChannelCmd(),
		newOrdererCmd(),
		newPeerCmd(),
		newChaincodeCmd(),
		newNetworkCmd(),
		newBenchCmd(),
		newGatewayCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the cairn version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "cairn", Version)
		},
	}
}

// signalContext is cancelled on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// nodeDeps builds the logger, log level and metrics registry of a node process.
func nodeDeps(name, role, level string) (*slog.Logger, *slog.LevelVar, *prometheus.Registry, error) {
	lv := new(slog.LevelVar)
	l, ok := logging.ParseLevel(level)
	if !ok {
		return nil, nil, nil, fmt.Errorf("unknown log level %q", level)
	}
	lv.Set(l)
	return logging.New(logging.Config{Writer: os.Stdout, Level: lv, Node: name, Role: role}), lv, prometheus.NewRegistry(), nil
}

// loadYAML reads a configuration file strictly: unknown fields are errors, so
// a typo does not silently fall back to a default.
func loadYAML(path string, into any) error {
	if path == "" {
		return errors.New("--config is required")
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("parse config %s: %w", path, err)
	}
	return nil
}
