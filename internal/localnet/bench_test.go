package localnet_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"
)

// TestBenchOrdererCommand runs `cairn bench orderer` as users do, on its own
// three-orderer cluster, and checks its JSON contract and that every
// envelope it broadcast came back through Deliver.
func TestBenchOrdererCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three orderers")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(cairnBin, "bench", "orderer", "--orderers", "3", "--duration", "3s", "--size", "1024",
		"--clients", "8", "--window", "8", "--rate", "3000", "--json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench orderer: %v\n%s", err, stderr.String())
	}
	var res struct {
		TPS       *float64 `json:"tps"`
		P50       *float64 `json:"p50_ms"`
		P99       *float64 `json:"p99_ms"`
		Sent      *int64   `json:"sent"`
		Delivered *int64   `json:"delivered"`
		Errors    *int64   `json:"errors"`
		Orderers  int      `json:"orderers"`
		Bytes     int      `json:"envelope_bytes"`
		Blocks    int      `json:"blocks"`
		CPU       float64  `json:"cpu_us_per_envelope"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
	}
	if res.TPS == nil || res.P50 == nil || res.P99 == nil || res.Sent == nil || res.Delivered == nil || res.Errors == nil {
		t.Fatalf("a field of the contract (tps, p50_ms, p99_ms, sent, delivered, errors) is missing:\n%s", stdout.String())
	}
	if *res.Sent == 0 || *res.TPS <= 0 || *res.Errors != 0 || *res.Delivered != *res.Sent {
		t.Fatalf("sent %d, delivered %d, errors %d, tps %.0f", *res.Sent, *res.Delivered, *res.Errors, *res.TPS)
	}
	if *res.P50 <= 0 || *res.P99 < *res.P50 {
		t.Fatalf("latencies p50 %.1f ms, p99 %.1f ms", *res.P50, *res.P99)
	}
	// 1 KiB of payload plus the client's certificate, headers and signature.
	if res.Orderers != 3 || res.Bytes < 1024 || res.Bytes > 4096 || res.Blocks == 0 || res.CPU <= 0 {
		t.Fatalf("orderers %d, envelope_bytes %d, blocks %d, cpu_us_per_envelope %.0f", res.Orderers, res.Bytes, res.Blocks, res.CPU)
	}
}
