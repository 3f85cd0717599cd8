package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A real line, with a command name holding a space and a parenthesis.
	line := []byte("4550 (cairn (x) y) S 4541 4541 1 0 -1 4194560 3012 0 0 0 1234 567 0 0 20 0 9 0 100 0 0\n")
	got, err := parseStatCPU(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := (1234 + 567) * 10 * time.Millisecond; got != want {
		t.Fatalf("CPU = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1 (x S 1", "1 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 a b"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
	if self, err := cpuTime(0); err != nil || self < 0 {
		t.Fatalf("own CPU time: %v, %v", self, err)
	}
}

func TestOnEveryCore(t *testing.T) {
	done := make([]atomic.Bool, 1000)
	if err := onEveryCore(context.Background(), len(done), func(i int) error {
		if done[i].Swap(true) {
			return fmt.Errorf("index %d run twice", i)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range done {
		if !done[i].Load() {
			t.Fatalf("index %d not run", i)
		}
	}
	boom := errors.New("boom")
	if err := onEveryCore(context.Background(), 100, func(i int) error {
		if i == 50 {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) {
		t.Fatalf("error from one call: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := onEveryCore(ctx, 100, func(int) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}
