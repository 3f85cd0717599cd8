// Package proccpu owns reading the CPU time the running process has used,
// which benchmarks divide by the work they measured (both ends of what they
// time often run in one process, on several cores, so wall time alone says
// little). It reads getrusage(2); other processes' CPU time is read from /proc
// by internal/bench.
package proccpu
