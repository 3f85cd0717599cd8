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

// TestBenchGatewayCommand runs `cairn bench gateway` as users do, on the
// network it starts (3 orderers, 2 organisations × 1 peer), once with its
// defaults (basic, a CommitStatus call per transaction) and once with the
// plain-shim chaincode, commit statuses from filtered block events and a
// share of hot keys, and checks its JSON contract: every transaction
// submitted is accounted for exactly once, and only conflicts are invalid.
func TestBenchGatewayCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three orderers and two peers")
	}
	for _, tc := range []struct {
		name string
		args []string
		// chaincode and commitStatus are what the JSON must echo; hot
		// allows MVCC conflicts and endorsement mismatches on hot keys.
		chaincode, commitStatus string
		hot                     bool
	}{
		{"defaults", nil, "basic", "rpc", false},
		{"shimcheck-events-hot", []string{"--chaincode", "shimcheck", "--commit-status", "events", "--hot-keys", "20"}, "shimcheck", "events", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"bench", "gateway", "--duration", "3s", "--warmup", "1s", "--clients", "20", "--json"}, tc.args...)
			cmd := exec.Command(cairnBin, args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("bench gateway: %v\n%s", err, stderr.String())
			}
			var res struct {
				TPS           *float64         `json:"tps"`
				P50           *float64         `json:"p50_ms"`
				P99           *float64         `json:"p99_ms"`
				Submitted     int64            `json:"submitted"`
				Committed     *int64           `json:"committed"`
				Valid         int64            `json:"valid"`
				Errors        *int64           `json:"errors"`
				Codes         map[string]int64 `json:"codes"`
				ErrorsByPhase map[string]int64 `json:"errors_by_phase"`
				Chaincode     string           `json:"chaincode"`
				CommitStatus  string           `json:"commit_status"`
				CPU           float64          `json:"cpu_us_per_tx"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
			}
			if res.TPS == nil || res.P50 == nil || res.P99 == nil || res.Committed == nil || res.Errors == nil || res.Codes == nil {
				t.Fatalf("a field of the contract (tps, p50_ms, p99_ms, committed, errors, codes) is missing:\n%s", stdout.String())
			}
			if res.Chaincode != tc.chaincode || res.CommitStatus != tc.commitStatus {
				t.Errorf("chaincode %q, commit_status %q; want %q, %q", res.Chaincode, res.CommitStatus, tc.chaincode, tc.commitStatus)
			}
			if *res.TPS <= 0 || res.Valid == 0 || *res.P50 <= 0 || *res.P99 < *res.P50 || res.CPU <= 0 {
				t.Errorf("tps %.0f, valid %d, p50 %.1f ms, p99 %.1f ms, cpu %.0f µs/tx", *res.TPS, res.Valid, *res.P50, *res.P99, res.CPU)
			}
			if res.Submitted != *res.Committed+*res.Errors {
				t.Errorf("submitted %d ≠ committed %d + errors %d", res.Submitted, *res.Committed, *res.Errors)
			}
			var byCode int64
			for code, n := range res.Codes {
				byCode += n
				if code != "VALID" && !(tc.hot && code == "MVCC_READ_CONFLICT") {
					t.Errorf("%d transactions committed %s", n, code)
				}
			}
			if byCode != *res.Committed || res.Codes["VALID"] != res.Valid {
				t.Errorf("codes %v do not add up to committed %d, valid %d", res.Codes, *res.Committed, res.Valid)
			}
			// With hot keys the two organisations' peers may read a key at
			// different heights, which the gateway refuses at endorsement,
			// as Fabric's does; nothing else may fail.
			if *res.Errors != 0 && !(tc.hot && res.ErrorsByPhase["endorse"] == *res.Errors) {
				t.Errorf("%d errors %v: %s", *res.Errors, res.ErrorsByPhase, stdout.String())
			}
		})
	}
}
