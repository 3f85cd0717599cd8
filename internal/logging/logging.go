// Package logging owns the construction of Cairn's structured loggers: slog JSON
// with ECS-style field names, and a level that can be changed at run time through
// the operations endpoint. Loggers are created by the binary and passed down;
// nothing here is global.
package logging

import (
	"io"
	"log/slog"
	"strings"
)

// Config says where a node logs and from which level.
type Config struct {
	// Writer receives one JSON object per line (os.Stdout in nodes).
	Writer io.Writer
	// Level is shared with the operations endpoint's /logspec handler.
	Level *slog.LevelVar
	// Node names the process (e.g. "peer0.org1.example.com"), written as service.name.
	Node string
	// Role is orderer, peer, ca, gateway or chaincode, written as service.type.
	Role string
}

// New returns a JSON logger whose records use ECS field names (@timestamp,
// log.level, message), so Elasticsearch and Kibana read them without mapping.
func New(cfg Config) *slog.Logger {
	level := cfg.Level
	if level == nil {
		level = new(slog.LevelVar)
	}
	h := slog.NewJSONHandler(cfg.Writer, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
			case slog.LevelKey:
				a.Key = "log.level"
				a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				a.Key = "message"
			}
			return a
		},
	})
	l := slog.New(h)
	if cfg.Node != "" {
		l = l.With("service.name", cfg.Node)
	}
	if cfg.Role != "" {
		l = l.With("service.type", cfg.Role)
	}
	return l
}

// ParseLevel reads debug, info, warn(ing) or error, case-insensitively.
func ParseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, true
	case "info", "":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}
