// Package freeport owns finding a TCP port that is free now, for servers
// that must be named (in a genesis block, a network description) before they
// start: local networks and multi-node tests.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Pick finds a TCP port on host that is free now and not in taken. It
// probes random ports below the kernel's ephemeral range rather than asking
// for port 0: a port the kernel hands out for a listener comes from the same
// range as the source ports of outgoing connections, so between the probe
// and the node's own bind any connection could take it (seen in CI as a peer
// exiting with "address already in use"). A port returned is added to taken.
func Pick(host string, taken map[int]bool) (int, error) {
	low, high := 20000, ephemeralLow()
	if high <= low+1000 {
		low, high = 10000, 20000
	}
	var last error
	for range 200 {
		port := low + rand.IntN(high-low)
		if taken[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			last = err
			continue
		}
		l.Close()
		taken[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port on %s between %d and %d: %v", host, low, high, last)
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux),
// 32768 when it cannot be read.
func ephemeralLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(raw))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 {
		return 32768
	}
	return n
}
