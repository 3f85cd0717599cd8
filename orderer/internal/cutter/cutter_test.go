package cutter

import (
	"strconv"
	"strings"
	"testing"
)

// run plays a scenario of steps ("name:size" orders an envelope, "timeout" fires
// the batch timer) and renders every outcome on one line per step, so a whole
// scenario is compared against its golden trace at once.
func run(cfg Config, steps []string) string {
	c := New(cfg)
	var out []string
	for _, s := range steps {
		var batches []Batch
		pending := false
		if s == "timeout" {
			b := c.Cut()
			if len(b.Envelopes) > 0 {
				batches = append(batches, b)
			}
		} else {
			name, size, _ := strings.Cut(s, ":")
			n, _ := strconv.Atoi(size)
			batches, pending = c.Ordered([]byte(name), uint32(n))
		}
		line := s + " ->"
		for _, b := range batches {
			var names []string
			for _, e := range b.Envelopes {
				names = append(names, string(e))
			}
			line += " [" + strings.Join(names, " ") + "]/" + string(b.Reason)
		}
		if pending {
			line += " pending=" + strconv.Itoa(c.Pending())
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func TestCutterGolden(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		steps []string
		want  string
	}{
		{
			name:  "count",
			cfg:   Config{MaxMessageCount: 3, PreferredMaxBytes: 100},
			steps: []string{"a:1", "b:1", "c:1", "d:1", "timeout", "timeout"},
			want: `a:1 -> pending=1
b:1 -> pending=2
c:1 -> [a b c]/max_message_count
d:1 -> pending=1
timeout -> [d]/batch_timeout
timeout ->`,
		},
		{
			name:  "preferred bytes overflow flushes pending first",
			cfg:   Config{MaxMessageCount: 10, PreferredMaxBytes: 10},
			steps: []string{"a:4", "b:4", "c:4", "d:6", "e:1"},
			want: `a:4 -> pending=1
b:4 -> pending=2
c:4 -> [a b]/preferred_max_bytes pending=1
d:6 -> pending=2
e:1 -> [c d]/preferred_max_bytes pending=1`,
		},
		{
			name:  "exactly preferred bytes stays in batch",
			cfg:   Config{MaxMessageCount: 10, PreferredMaxBytes: 10},
			steps: []string{"a:5", "b:5", "c:1"},
			want: `a:5 -> pending=1
b:5 -> pending=2
c:1 -> [a b]/preferred_max_bytes pending=1`,
		},
		{
			name:  "oversized envelope goes alone",
			cfg:   Config{MaxMessageCount: 10, PreferredMaxBytes: 10},
			steps: []string{"a:2", "big:11", "c:2", "big2:50"},
			want: `a:2 -> pending=1
big:11 -> [a]/oversized_envelope [big]/oversized_envelope
c:2 -> pending=1
big2:50 -> [c]/oversized_envelope [big2]/oversized_envelope`,
		},
		{
			name:  "oversized with nothing pending",
			cfg:   Config{MaxMessageCount: 10, PreferredMaxBytes: 10},
			steps: []string{"big:11", "timeout"},
			want: `big:11 -> [big]/oversized_envelope
timeout ->`,
		},
		{
			name:  "count of one",
			cfg:   Config{MaxMessageCount: 1, PreferredMaxBytes: 10},
			steps: []string{"a:1", "b:10"},
			want: `a:1 -> [a]/max_message_count
b:10 -> [b]/max_message_count`,
		},
		{
			name:  "overflow then count in one step",
			cfg:   Config{MaxMessageCount: 1, PreferredMaxBytes: 10},
			steps: []string{"a:1"},
			want:  `a:1 -> [a]/max_message_count`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(tt.cfg, tt.steps); got != tt.want {
				t.Errorf("trace mismatch\ngot:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestReset(t *testing.T) {
	c := New(Config{MaxMessageCount: 5, PreferredMaxBytes: 100})
	c.Ordered([]byte("a"), 1)
	c.Reset()
	if c.Pending() != 0 || len(c.Cut().Envelopes) != 0 {
		t.Fatal("Reset left envelopes pending")
	}
}

func TestValidate(t *testing.T) {
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("zero config validated")
	}
	if err := (Config{MaxMessageCount: 1, PreferredMaxBytes: 1}).Validate(); err != nil {
		t.Fatal(err)
	}
}
