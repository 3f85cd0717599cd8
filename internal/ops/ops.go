// Package ops owns the operations HTTP endpoint every long-running Cairn node
// serves: /healthz (registered health checks, Fabric's response shape), /readyz,
// /metrics (Prometheus), /logspec (read and change the log level) and /version.
// A Server is started once and closed once; Close waits for its goroutine.
package ops

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-ledger/cairn/internal/logging"
)

// Config configures an operations endpoint.
type Config struct {
	// ListenAddress is host:port; port 0 picks a free port (see Addr).
	ListenAddress string
	// Registry holds the node's metrics; it is served on /metrics.
	Registry *prometheus.Registry
	// Logger receives server errors.
	Logger *slog.Logger
	// Level is the node's log level, read and set through /logspec.
	Level *slog.LevelVar
	// TLS, when set, serves HTTPS.
	TLS *tls.Config
	// Version is reported by /version.
	Version string
}

// Check reports a component's health; a nil error means healthy.
type Check func(ctx context.Context) error

// Server is a running operations endpoint.
type Server struct {
	cfg    Config
	mu     sync.RWMutex
	checks map[string]Check
	ready  map[string]Check
	ln     net.Listener
	srv    *http.Server
	done   chan struct{}
}

// New prepares an operations endpoint; Start begins serving.
func New(cfg Config) *Server {
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Level == nil {
		cfg.Level = new(slog.LevelVar)
	}
	return &Server{cfg: cfg, checks: map[string]Check{}, ready: map[string]Check{}}
}

// AddCheck registers a liveness check reported by /healthz.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// AddReadyCheck registers a readiness check reported by /readyz.
func (s *Server) AddReadyCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready[name] = c
}

// Start listens and serves in a goroutine owned by the Server.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("operations listen on %s: %w", s.cfg.ListenAddress, err)
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", s.health(func() map[string]Check { return s.checks }))
	mux.HandleFunc("/readyz", s.health(func() map[string]Check { return s.ready }))
	mux.Handle("/metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/logspec", s.logspec)
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"Version": s.cfg.Version})
	})
	s.ln = ln
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("operations endpoint stopped", "error", err)
		}
	}()
	return nil
}

// Addr is the bound address, valid after Start.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops serving and waits for the server goroutine.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

type failedCheck struct {
	Component string `json:"component"`
	Reason    string `json:"reason"`
}

// health answers in Fabric's shape: {"status":"OK","time":...} or 503 with the
// failed checks, so Fabric operators' probes keep working.
func (s *Server) health(list func() map[string]Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
			return
		}
		s.mu.RLock()
		checks := make(map[string]Check, len(list()))
		for k, v := range list() {
			checks[k] = v
		}
		s.mu.RUnlock()
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		var failed []failedCheck
		for name, c := range checks {
			if err := c(ctx); err != nil {
				failed = append(failed, failedCheck{Component: name, Reason: err.Error()})
			}
		}
		sort.Slice(failed, func(i, j int) bool { return failed[i].Component < failed[j].Component })
		now := time.Now().UTC()
		if len(failed) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "Service Unavailable", "time": now, "failed_checks": failed})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "OK", "time": now})
	}
}

func (s *Server) logspec(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]string{"spec": levelName(s.cfg.Level.Level())})
	case http.MethodPut:
		var req struct {
			Spec string `json:"spec"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be JSON {\"spec\": \"info\"}: " + err.Error()})
			return
		}
		lvl, ok := logging.ParseLevel(req.Spec)
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("unknown log level %q (debug, info, warn, error)", req.Spec)})
			return
		}
		s.cfg.Level.Set(lvl)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET or PUT"})
	}
}

func levelName(l slog.Level) string {
	switch {
	case l <= slog.LevelDebug:
		return "debug"
	case l <= slog.LevelInfo:
		return "info"
	case l <= slog.LevelWarn:
		return "warn"
	}
	return "error"
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
