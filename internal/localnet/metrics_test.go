package localnet_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cairn-ledger/cairn/internal/localnet"
)

func TestParseRaftMetrics(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       map[string]localnet.RaftState
		wantErr    bool
	}{
		{
			name: "leader and follower channels",
			text: `# HELP cairn_orderer_is_leader 1 while this node leads the channel's raft group.
# TYPE cairn_orderer_is_leader gauge
cairn_orderer_is_leader{channel="mychannel"} 1
cairn_orderer_is_leader{channel="other"} 0
# HELP cairn_orderer_raft_term Current raft term of this node in the channel's raft group.
# TYPE cairn_orderer_raft_term gauge
cairn_orderer_raft_term{channel="mychannel"} 7
cairn_orderer_raft_term{channel="other"} 3
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
`,
			want: map[string]localnet.RaftState{"mychannel": {Leader: true, Term: 7}, "other": {Term: 3}},
		},
		{
			name: "no term metric (older orderer)",
			text: "cairn_orderer_is_leader{channel=\"mychannel\"} 1\n",
			want: map[string]localnet.RaftState{"mychannel": {Leader: true}},
		},
		{
			name: "no raft metrics at all",
			text: "go_goroutines 3\n",
			want: map[string]localnet.RaftState{},
		},
		{
			name: "series without a channel label and a nonsense term are ignored",
			text: "cairn_orderer_is_leader 1\ncairn_orderer_raft_term{channel=\"c\"} -4\n",
			want: map[string]localnet.RaftState{"c": {}},
		},
		{name: "not prometheus text", text: "{\"json\": true}\n", wantErr: true},
		{name: "truncated", text: "cairn_orderer_is_leader{channel=\"mychannel\"", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := localnet.ParseRaftMetrics(strings.NewReader(tc.text))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzParseRaftMetrics(f *testing.F) {
	f.Add("cairn_orderer_is_leader{channel=\"mychannel\"} 1\ncairn_orderer_raft_term{channel=\"mychannel\"} 2\n")
	f.Add("# TYPE x counter\nx 1e308\n")
	f.Add("cairn_orderer_raft_term{channel=\"c\"} NaN\n")
	f.Fuzz(func(t *testing.T, text string) {
		_, _ = localnet.ParseRaftMetrics(strings.NewReader(text))
	})
}
