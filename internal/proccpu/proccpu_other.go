//go:build !unix

package proccpu

import "time"

// Self is not measured on this platform: it is always zero.
func Self() time.Duration { return 0 }
