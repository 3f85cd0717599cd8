package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ), which
// Linux fixes at 100 for user space on every architecture Cairn runs on.
const clockTick = 10 * time.Millisecond

// cpuTime is the user+system CPU time a process has used so far, read from
// /proc (Linux only); pid 0 means this process.
func cpuTime(pid int) (time.Duration, error) {
	name := "/proc/self/stat"
	if pid != 0 {
		name = fmt.Sprintf("/proc/%d/stat", pid)
	}
	raw, err := os.ReadFile(name)
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	return parseStatCPU(raw)
}

// parseStatCPU extracts utime+stime from a /proc/PID/stat line. The command
// name (field 2) may hold spaces and parentheses, so fields are counted from
// the last ')'.
func parseStatCPU(raw []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat line")
	}
	// After ')': state is field 3; utime and stime are fields 14 and 15.
	f := bytes.Fields(raw[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat line: %d fields", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc stat CPU field %q", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// cpuOf sums the CPU time of this process and pids; ok is false if any of
// them could not be read.
func cpuOf(pids []int) (total time.Duration, ok bool) {
	times, ok := cpuByProcess(pids)
	for _, t := range times {
		total += t
	}
	return total, ok
}

// cpuByProcess reads the CPU time of this process (first) and of pids; ok
// is false if any could not be read (not Linux, a process gone).
func cpuByProcess(pids []int) (times []time.Duration, ok bool) {
	times = make([]time.Duration, 0, len(pids)+1)
	for _, pid := range append([]int{0}, pids...) {
		t, err := cpuTime(pid)
		if err != nil {
			return nil, false
		}
		times = append(times, t)
	}
	return times, true
}

func pidsOf(procs []Process) []int {
	pids := make([]int, len(procs))
	for i, p := range procs {
		pids[i] = p.PID
	}
	return pids
}

// cpuPerRole turns CPU times read by cpuByProcess before and after a window
// into µs per proposal by role ("bench" for this process) and the total.
func cpuPerRole(procs []Process, before, after []time.Duration, proposals int64) (map[string]float64, time.Duration) {
	byRole := map[string]time.Duration{}
	var total time.Duration
	for i := range after {
		role := "bench"
		if i > 0 {
			role = procs[i-1].Role
		}
		d := after[i] - before[i]
		byRole[role] += d
		total += d
	}
	us := make(map[string]float64, len(byRole))
	for role, d := range byRole {
		us[role] = float64(d/time.Microsecond) / float64(proposals)
	}
	return us, total
}
