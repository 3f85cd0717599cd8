// Package builder turns installed chaincode packages into something the peer
// can launch, following Fabric's external builder contract
// (docs/source/cc_launcher.md, core/container/externalbuilder):
//
//   - For each configured external builder, in order, the peer runs
//     bin/detect CHAINCODE_SOURCE_DIR CHAINCODE_METADATA_DIR; the first to
//     exit 0 claims the package. Then bin/build CHAINCODE_SOURCE_DIR
//     CHAINCODE_METADATA_DIR BUILD_OUTPUT_DIR, and, when present,
//     bin/release BUILD_OUTPUT_DIR RELEASE_OUTPUT_DIR. Launching runs
//     bin/run BUILD_OUTPUT_DIR RUN_METADATA_DIR (RUN_METADATA_DIR/chaincode.json
//     holds chaincode_id, peer_address, client_cert, client_key, root_cert and
//     mspid), unless the release wrote chaincode/server/connection.json, in
//     which case the chaincode is a service the peer dials.
//   - Builder programs see only the variables named in the builder's
//     propagateEnvironment plus LD_LIBRARY_PATH, LIBPATH, PATH and TMPDIR,
//     as in Fabric.
//   - CHAINCODE_SOURCE_DIR is code.tar.gz extracted (confined to the folder,
//     see ccpackage.Extract); CHAINCODE_METADATA_DIR holds metadata.json.
//
// After the external builders come two built-in ones, so a peer needs no
// scripts for the common cases: "ccaas" (metadata type ccaas: code.tar.gz
// holds connection.json, which is released as Fabric's ccaas_builder does)
// and "golang" (metadata type golang: code.tar.gz holds a Go module under
// src/, compiled with the local Go toolchain). Built-ins come last because
// Fabric also consults its external builders first and falls back to its
// built-in (Docker) platform builders only when none claims the package;
// an operator's builder can therefore always override a built-in one.
//
// Build results are kept per package ID under Config.Dir exactly as Fabric
// lays them out (<id>/build-info.json, <id>/bld, <id>/release) and reused
// by later builds, including by a restarted peer. A build is assembled in a
// scratch folder and renamed into place, so a crash never leaves a half
// build that looks finished.
//
// # Concurrency
//
// Builder is safe for concurrent use. Concurrent Build calls for one package
// ID share one build; builds of different packages run in parallel. Every
// program the builder runs is bounded by Config.Timeout and by the caller's
// context, and is killed with its whole process group when either ends.
package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

// Names of the built-in builders, as recorded in build-info.json.
const (
	GolangName = "golang"
	CCaaSName  = "ccaas"
)

// Fabric's layout of a release folder and a run metadata folder.
const (
	// ServerReleaseDir is where a release puts connection.json when the
	// chaincode runs as a service the peer dials.
	ServerReleaseDir = "chaincode/server"
	// RunConfigFile is the file in RUN_METADATA_DIR that bin/run reads.
	RunConfigFile = "chaincode.json"
	buildInfoFile = "build-info.json"
	scratchPrefix = ".build-"
	// goBinary is the file the golang builder compiles into the build folder.
	goBinary = "chaincode"
	// maxOutput bounds how much of a failing program's output an error quotes.
	maxOutput = 8 << 10
)

// DefaultPropagateEnvironment is always passed to builder programs
// (Fabric's externalbuilder.DefaultEnvWhitelist).
var DefaultPropagateEnvironment = []string{"LD_LIBRARY_PATH", "LIBPATH", "PATH", "TMPDIR"}

// ErrNoRun: the package was built by a builder without bin/run and its
// release names no chaincode server, so there is nothing to launch.
var ErrNoRun = errors.New("builder has no bin/run and the release has no chaincode/server/connection.json")

// External is one configured external builder (core.yaml chaincode.externalBuilders).
type External struct {
	// Name identifies the builder in logs and in build-info.json.
	Name string `yaml:"name"`
	// Path is the builder's folder; it holds bin/detect, bin/build and
	// optionally bin/release and bin/run.
	Path string `yaml:"path"`
	// PropagateEnvironment names peer environment variables passed to the
	// builder's programs, besides DefaultPropagateEnvironment.
	PropagateEnvironment []string `yaml:"propagateEnvironment"`
}

// Config configures a Builder.
type Config struct {
	// Dir keeps build results, one folder per package ID (required).
	Dir string
	// External builders, tried in order before the built-in ones.
	External []External
	// Golang enables the built-in golang builder.
	Golang bool
	// CCaaS enables the built-in ccaas builder.
	CCaaS bool
	// GoBinary is the go command the golang builder runs; default "go".
	GoBinary string
	// Timeout bounds one whole build (detect, build and release); default 5m.
	Timeout time.Duration
	// LookupEnv reads the peer's environment for propagateEnvironment and
	// the Go toolchain's settings; nil means no variables are propagated.
	LookupEnv func(string) (string, bool)
	// Logger receives builder output, one record per line; nil discards it.
	Logger *slog.Logger
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("builder: build directory is required")
	}
	seen := map[string]bool{GolangName: c.Golang, CCaaSName: c.CCaaS}
	for i, e := range c.External {
		if e.Name == "" || e.Path == "" {
			return fmt.Errorf("external builder %d: name and path are required", i)
		}
		if seen[e.Name] {
			return fmt.Errorf("external builder %q: name used twice", e.Name)
		}
		seen[e.Name] = true
		if !filepath.IsAbs(e.Path) {
			return fmt.Errorf("external builder %q: path %q must be absolute", e.Name, e.Path)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.GoBinary == "" {
		c.GoBinary = "go"
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.LookupEnv == nil {
		c.LookupEnv = func(string) (string, bool) { return "", false }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Builder builds packages. Create it with New.
type Builder struct {
	cfg      Config
	log      *slog.Logger
	builders []builder

	mu      sync.Mutex
	flights map[string]*flight
}

type flight struct {
	done chan struct{}
	inst *Instance
	err  error
}

// New checks cfg, creates its build folder and removes scratch folders left
// by builds a crash interrupted.
func New(cfg Config) (*Builder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create build directory: %w", err)
	}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("read build directory: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), scratchPrefix) {
			if err := os.RemoveAll(filepath.Join(cfg.Dir, e.Name())); err != nil {
				return nil, fmt.Errorf("remove interrupted build %s: %w", e.Name(), err)
			}
		}
	}
	b := &Builder{cfg: cfg, log: cfg.Logger, flights: map[string]*flight{}}
	for _, e := range cfg.External {
		b.builders = append(b.builders, &external{conf: e, b: b})
	}
	if cfg.CCaaS {
		b.builders = append(b.builders, ccaasBuilder{})
	}
	if cfg.Golang {
		b.builders = append(b.builders, &golangBuilder{b: b})
	}
	return b, nil
}

// Instance is a built package, ready to launch.
type Instance struct {
	PackageID string
	// Builder is the name of the builder that built it.
	Builder string
	// BuildDir is BUILD_OUTPUT_DIR, ReleaseDir RELEASE_OUTPUT_DIR.
	BuildDir   string
	ReleaseDir string

	runner builder
	b      *Builder
}

// Server returns the chaincode server the release describes
// (RELEASE_OUTPUT_DIR/chaincode/server/connection.json), or ok false when
// the chaincode is a process to run instead.
func (i *Instance) Server() (conn ccpackage.Connection, ok bool, err error) {
	path := filepath.Join(i.ReleaseDir, ServerReleaseDir, ccpackage.ConnectionFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return conn, false, nil
	}
	if err != nil {
		return conn, false, fmt.Errorf("read chaincode server connection: %w", err)
	}
	conn, err = ParseConnection(data)
	if err != nil {
		return conn, false, fmt.Errorf("chaincode %s: %s: %w", i.PackageID, path, err)
	}
	return conn, true, nil
}

// RunConfig is what a launched chaincode needs to reach the peer; it is
// written as RUN_METADATA_DIR/chaincode.json in Fabric's format.
type RunConfig struct {
	PackageID   string `json:"chaincode_id"`
	PeerAddress string `json:"peer_address"`
	// ClientCert, ClientKey: the chaincode's TLS client key pair, PEM.
	ClientCert string `json:"client_cert"`
	ClientKey  string `json:"client_key"`
	// RootCert verifies the peer's TLS certificate, PEM.
	RootCert string `json:"root_cert"`
	MSPID    string `json:"mspid"`
}

// Command prepares the process that runs the chaincode: bin/run of an
// external builder, or the compiled binary of the golang builder. runDir
// must be an empty private folder that outlives the process; chaincode.json
// (and, for the binary, the TLS files the Go shim reads) are written there.
// The command is not started. It returns ErrNoRun when the builder cannot run.
func (i *Instance) Command(runDir string, rc RunConfig) (*exec.Cmd, error) {
	data, err := json.Marshal(rc)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", RunConfigFile, err)
	}
	if err := os.WriteFile(filepath.Join(runDir, RunConfigFile), data, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", RunConfigFile, err)
	}
	cmd, err := i.runner.command(i, runDir, rc)
	if err != nil {
		return nil, err
	}
	setProcessGroup(cmd)
	return cmd, nil
}

// builder is one way of building packages.
type builder interface {
	name() string
	detect(ctx context.Context, bc *buildContext) bool
	build(ctx context.Context, bc *buildContext) error
	release(ctx context.Context, bc *buildContext) error
	command(i *Instance, runDir string, rc RunConfig) (*exec.Cmd, error)
}

// buildContext holds the folders of one build.
type buildContext struct {
	packageID   string
	metadata    ccpackage.Metadata
	sourceDir   string
	metadataDir string
	bldDir      string
	releaseDir  string
}

// SanitizePackageID maps a package ID to a folder name as Fabric does.
func SanitizePackageID(id string) string { return unsafePathChars.ReplaceAllString(id, "-") }

var unsafePathChars = regexp.MustCompile(`[<>:"/\\|?*&]`)

type buildInfo struct {
	BuilderName string `json:"builder_name"`
}

// Build returns the build of a package, building it on first use. pkg is the
// whole package as installed.
func (b *Builder) Build(ctx context.Context, packageID string, pkg []byte) (*Instance, error) {
	b.mu.Lock()
	f, ok := b.flights[packageID]
	if !ok {
		f = &flight{done: make(chan struct{})}
		b.flights[packageID] = f
		b.mu.Unlock()
		f.inst, f.err = b.build(ctx, packageID, pkg)
		b.mu.Lock()
		delete(b.flights, packageID)
		b.mu.Unlock()
		close(f.done)
		return f.inst, f.err
	}
	b.mu.Unlock()
	select {
	case <-f.done:
		return f.inst, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for build of %s: %w", packageID, ctx.Err())
	}
}

// Cached returns the earlier build of packageID, or nil if there is none.
func (b *Builder) Cached(packageID string) (*Instance, error) {
	dir := filepath.Join(b.cfg.Dir, SanitizePackageID(packageID))
	data, err := os.ReadFile(filepath.Join(dir, buildInfoFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read build info of %s: %w", packageID, err)
	}
	var info buildInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("malformed build info of %s: %w", packageID, err)
	}
	for _, bl := range b.builders {
		if bl.name() == info.BuilderName {
			return &Instance{
				PackageID:  packageID,
				Builder:    bl.name(),
				BuildDir:   filepath.Join(dir, "bld"),
				ReleaseDir: filepath.Join(dir, "release"),
				runner:     bl,
				b:          b,
			}, nil
		}
	}
	return nil, fmt.Errorf("chaincode %s was built with builder %q, which is no longer configured", packageID, info.BuilderName)
}

func (b *Builder) build(ctx context.Context, packageID string, pkg []byte) (*Instance, error) {
	if inst, err := b.Cached(packageID); inst != nil || err != nil {
		return inst, err
	}
	parsed, err := ccpackage.Parse(pkg)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", packageID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()

	scratch, err := os.MkdirTemp(b.cfg.Dir, scratchPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("build %s: create scratch folder: %w", packageID, err)
	}
	defer os.RemoveAll(scratch)
	out := filepath.Join(scratch, "out")
	bc := &buildContext{
		packageID:   packageID,
		metadata:    parsed.Metadata,
		sourceDir:   filepath.Join(scratch, "src"),
		metadataDir: filepath.Join(scratch, "metadata"),
		bldDir:      filepath.Join(out, "bld"),
		releaseDir:  filepath.Join(out, "release"),
	}
	for _, d := range []string{bc.sourceDir, bc.metadataDir, out, bc.bldDir, bc.releaseDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, fmt.Errorf("build %s: %w", packageID, err)
		}
	}
	if err := ccpackage.Extract(parsed.Code, bc.sourceDir); err != nil {
		return nil, fmt.Errorf("build %s: extract %s: %w", packageID, ccpackage.CodeFile, err)
	}
	mdJSON, err := json.Marshal(parsed.Metadata)
	if err != nil {
		return nil, fmt.Errorf("build %s: encode metadata: %w", packageID, err)
	}
	if err := os.WriteFile(filepath.Join(bc.metadataDir, ccpackage.MetadataFile), mdJSON, 0o600); err != nil {
		return nil, fmt.Errorf("build %s: write metadata: %w", packageID, err)
	}

	var chosen builder
	for _, bl := range b.builders {
		if bl.detect(ctx, bc) {
			chosen = bl
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("build %s: detect: %w", packageID, ctx.Err())
		}
	}
	if chosen == nil {
		return nil, fmt.Errorf("build %s: no builder claimed the package (type %q)", packageID, parsed.Metadata.Type)
	}
	b.log.Info("building chaincode", "package_id", packageID, "builder", chosen.name())
	start := time.Now()
	if err := chosen.build(ctx, bc); err != nil {
		return nil, fmt.Errorf("build %s with builder %q: %w", packageID, chosen.name(), err)
	}
	if err := chosen.release(ctx, bc); err != nil {
		return nil, fmt.Errorf("release %s with builder %q: %w", packageID, chosen.name(), err)
	}
	info, err := json.Marshal(buildInfo{BuilderName: chosen.name()})
	if err != nil {
		return nil, fmt.Errorf("build %s: encode build info: %w", packageID, err)
	}
	if err := os.WriteFile(filepath.Join(out, buildInfoFile), info, 0o600); err != nil {
		return nil, fmt.Errorf("build %s: write build info: %w", packageID, err)
	}
	final := filepath.Join(b.cfg.Dir, SanitizePackageID(packageID))
	if err := os.Rename(out, final); err != nil {
		return nil, fmt.Errorf("build %s: move build into place: %w", packageID, err)
	}
	b.log.Info("built chaincode", "package_id", packageID, "builder", chosen.name(), "duration", time.Since(start).String())
	return b.Cached(packageID)
}

// environment is the environment of builder programs: the propagated
// variables that are set in the peer's environment, then extra.
func (b *Builder) environment(propagate []string, extra ...string) []string {
	var env []string
	seen := map[string]bool{}
	for _, list := range [][]string{propagate, DefaultPropagateEnvironment} {
		for _, k := range list {
			if seen[k] {
				continue
			}
			seen[k] = true
			if v, ok := b.cfg.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
	}
	return append(env, extra...)
}

// run runs a builder program to completion, logging its output and quoting
// its tail in the error when it fails.
func (b *Builder) run(ctx context.Context, cmd *exec.Cmd, attrs ...any) error {
	setProcessGroup(cmd)
	out := &tailBuffer{max: maxOutput}
	lw := NewLogWriter(b.log, slog.LevelInfo, "builder output", attrs...)
	defer lw.Close()
	cmd.Stdout = io.MultiWriter(out, lw)
	cmd.Stderr = cmd.Stdout
	// A grandchild that keeps the output pipe open must not hold Wait
	// forever once the program itself has exited.
	cmd.WaitDelay = 2 * time.Second
	if err := startAndWait(ctx, cmd); err != nil {
		if tail := strings.TrimSpace(out.String()); tail != "" {
			return fmt.Errorf("%s: %w\n%s", filepath.Base(cmd.Path), err, tail)
		}
		return fmt.Errorf("%s: %w", filepath.Base(cmd.Path), err)
	}
	return nil
}

// startAndWait runs cmd, killing its whole process group when ctx ends.
func startAndWait(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		select {
		case <-ctx.Done():
			KillGroup(cmd.Process.Pid)
		case <-done:
		}
	}()
	err := cmd.Wait()
	close(done)
	<-killed
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// setProcessGroup puts cmd in a process group of its own, so that it and
// every process it starts can be signalled together.
func setProcessGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
}

// KillGroup sends SIGKILL to the process group led by pid.
func KillGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// LogWriter turns a program's output into one log record per line.
type LogWriter struct {
	log   *slog.Logger
	level slog.Level
	msg   string
	attrs []any
	mu    sync.Mutex
	buf   bytes.Buffer
}

// NewLogWriter returns a writer logging each line as msg with attrs and a
// "line" attribute. Close flushes a last unterminated line.
func NewLogWriter(log *slog.Logger, level slog.Level, msg string, attrs ...any) *LogWriter {
	return &LogWriter{log: log, level: level, msg: msg, attrs: attrs}
}

func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			// Keep the partial line, bounded so a program that never writes
			// a newline cannot grow it without limit.
			if len(line) > maxOutput {
				w.emit(line)
				line = ""
			}
			w.buf.Reset()
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.emit(strings.TrimRight(line, "\r\n"))
	}
}

// Close logs what is left of an unterminated last line.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 0 {
		w.emit(w.buf.String())
		w.buf.Reset()
	}
	return nil
}

func (w *LogWriter) emit(line string) {
	w.log.Log(context.Background(), w.level, w.msg, append(append([]any{}, w.attrs...), "line", line)...)
}
