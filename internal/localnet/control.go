package localnet

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// StopNode stops one process of the network recorded in dir (a network
// started with `network up --detach`): SIGTERM, or SIGKILL when kill is set.
// It returns once the process is gone; a process that ignores SIGTERM for
// 10 s is killed. The process stays in processes.json, so StartNode can
// start it again.
func StopNode(dir, name string, kill bool) error {
	s, err := loadState(dir)
	if err != nil {
		return err
	}
	p, err := s.find(name)
	if err != nil {
		return err
	}
	if !alive(p.PID) {
		return fmt.Errorf("%s is not running (pid %d has exited)", name, p.PID)
	}
	if err := stop(p.PID, kill, 10*time.Second); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return nil
}

// StartNode starts a stopped process of the network recorded in dir again,
// with the binary given and the arguments and environment recorded in
// processes.json, records its new PID and waits until it listens. Starting a
// peer also starts again the chaincode processes attached to it that exited
// with it (a chaincode's shim exits when it loses its peer). It returns the
// names of the processes started.
func StartNode(ctx context.Context, dir, binary, name string) ([]string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s, err := loadState(dir)
	if err != nil {
		return nil, err
	}
	p, err := s.find(name)
	if err != nil {
		return nil, err
	}
	if alive(p.PID) {
		return nil, fmt.Errorf("%s is already running (pid %d); stop it first with 'cairn network stop %s'", name, p.PID, name)
	}
	todo := []*Process{p}
	if p.Role == "peer" {
		for _, cc := range s.Processes {
			if cc.Role == "chaincode" && cc.env("CORE_PEER_ADDRESS") == p.Address && !alive(cc.PID) {
				todo = append(todo, cc)
			}
		}
	}
	var started []string
	for _, q := range todo {
		if err := start(binary, q); err != nil {
			return started, err
		}
		started = append(started, q.Name)
		if err := writeJSON(filepath.Join(dir, StateFile), s); err != nil {
			return started, fmt.Errorf("record pid of %s: %w", q.Name, err)
		}
		// Chaincodes dial their peer, so the peer must listen before they start.
		if q.Address != "" {
			if err := waitTCP(ctx, q.Address, q.PID); err != nil {
				return started, fmt.Errorf("%s did not start (see %s): %w", q.Name, q.Log, err)
			}
		}
	}
	return started, nil
}

// find returns the process called name, or an error listing the names.
func (s *state) find(name string) (*Process, error) {
	names := make([]string, 0, len(s.Processes))
	for _, p := range s.Processes {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return nil, fmt.Errorf("no node named %q in this network; nodes are: %s", name, strings.Join(names, ", "))
}

// env returns the value of one of the process's recorded environment variables.
func (p *Process) env(key string) string {
	for _, kv := range p.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
