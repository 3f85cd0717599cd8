package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// external runs an operator's builder programs.
type external struct {
	conf External
	b    *Builder
}

func (e *external) name() string { return e.conf.Name }

func (e *external) program(name string) string { return filepath.Join(e.conf.Path, "bin", name) }

func (e *external) cmd(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.program(prog), args...)
	// startAndWait kills the whole group; this only stops exec from
	// killing the leader alone first.
	cmd.Cancel = func() error { return nil }
	cmd.Env = e.b.environment(e.conf.PropagateEnvironment)
	return cmd
}

func (e *external) detect(ctx context.Context, bc *buildContext) bool {
	err := e.b.run(ctx, e.cmd(ctx, "detect", bc.sourceDir, bc.metadataDir),
		"builder", e.conf.Name, "program", "detect", "package_id", bc.packageID)
	if err != nil {
		e.b.log.Debug("builder did not claim package", "builder", e.conf.Name, "package_id", bc.packageID, "error", err)
		return false
	}
	return true
}

func (e *external) build(ctx context.Context, bc *buildContext) error {
	return e.b.run(ctx, e.cmd(ctx, "build", bc.sourceDir, bc.metadataDir, bc.bldDir),
		"builder", e.conf.Name, "program", "build", "package_id", bc.packageID)
}

func (e *external) release(ctx context.Context, bc *buildContext) error {
	if _, err := os.Stat(e.program("release")); errors.Is(err, os.ErrNotExist) {
		return nil // bin/release is optional
	} else if err != nil {
		return fmt.Errorf("stat bin/release: %w", err)
	}
	return e.b.run(ctx, e.cmd(ctx, "release", bc.bldDir, bc.releaseDir),
		"builder", e.conf.Name, "program", "release", "package_id", bc.packageID)
}

func (e *external) command(i *Instance, runDir string, _ RunConfig) (*exec.Cmd, error) {
	run := e.program("run")
	if _, err := os.Stat(run); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("chaincode %s (builder %q): %w", i.PackageID, e.conf.Name, ErrNoRun)
	} else if err != nil {
		return nil, fmt.Errorf("stat bin/run: %w", err)
	}
	cmd := exec.Command(run, i.BuildDir, runDir)
	cmd.Env = e.b.environment(e.conf.PropagateEnvironment)
	return cmd, nil
}
