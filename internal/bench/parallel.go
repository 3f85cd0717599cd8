package bench

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
)

// onEveryCore runs do(0) … do(n-1) on GOMAXPROCS goroutines and returns the
// first error, or ctx's error if it ended first. The benchmarks sign their
// whole run this way before the clock starts.
func onEveryCore(ctx context.Context, n int, do func(i int) error) error {
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		next    atomic.Int64
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := do(i); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
