package localnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StateFile records the processes of a running local network, so that
// `cairn network down` (another process) can stop them.
const StateFile = "processes.json"

// Process is one node process of the local network.
type Process struct {
	Name string `json:"name"`
	// Role is orderer, peer or chaincode (status also knows ca and gateway).
	Role              string   `json:"role"`
	Org               string   `json:"org"`
	PID               int      `json:"pid"`
	Address           string   `json:"address,omitempty"`
	OperationsAddress string   `json:"operationsAddress,omitempty"`
	Args              []string `json:"args"`
	Env               []string `json:"env,omitempty"`
	Log               string   `json:"log"`
}

// state is processes.json.
type state struct {
	Processes []*Process `json:"processes"`
}

// start launches a process in its own session, so that it outlives a
// detached `network up` and does not receive the terminal's Ctrl-C twice.
func start(binary string, p *Process) error {
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log of %s: %w", p.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(binary, p.Args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.PID = cmd.Process.Pid
	// Reap the child when it exits so it does not linger as a zombie while
	// this process lives; its exit is observed through alive().
	go func() { _ = cmd.Wait() }()
	return nil
}

// alive reports whether a process with this PID exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// A Go process's main thread turns zombie before its other threads have
	// finished (one may be inside an fsync, holding files and LevelDB locks),
	// so a zombie counts as gone only once it is the last thread left.
	zombie, threads := false, 1
	for _, line := range strings.Split(string(raw), "\n") {
		switch {
		case strings.HasPrefix(line, "State:"):
			zombie = strings.Contains(line, "Z")
		case strings.HasPrefix(line, "Threads:"):
			if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "Threads:"))); err == nil {
				threads = n
			}
		}
	}
	return !zombie || threads > 1
}

// stop sends SIGTERM (or SIGKILL) and waits up to timeout for the process to
// go, then kills it.
func stop(pid int, kill bool, timeout time.Duration) error {
	if !alive(pid) {
		return nil
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 40 && alive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		return fmt.Errorf("process %d did not exit", pid)
	}
	return nil
}

// LoadProcesses reads the processes of the local network in dir, as
// processes.json records them (PIDs of the last start).
func LoadProcesses(dir string) ([]*Process, error) {
	s, err := loadState(dir)
	if err != nil {
		return nil, err
	}
	return s.Processes, nil
}

func loadState(dir string) (*state, error) {
	raw, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", StateFile, err)
	}
	var s state
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", StateFile, err)
	}
	return &s, nil
}

// waitTCP waits until addr accepts connections.
func waitTCP(ctx context.Context, addr string, pid int) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if pid > 0 && !alive(pid) {
			return fmt.Errorf("process %d exited before listening on %s", pid, addr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }

func readFileRaw(path string) ([]byte, error) { return os.ReadFile(path) }
