package chain

import (
	"slices"
	"testing"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/envelope"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func consenter(name string) channelconfig.Consenter {
	return channelconfig.Consenter{Host: name, Port: 7050, ClientTLSCert: []byte(name + "-cert"), ServerTLSCert: []byte(name + "-cert")}
}

// TestComputeMembership follows Fabric's etcdraft ComputeMembershipChanges.
func TestComputeMembership(t *testing.T) {
	a, b, c, d := consenter("a"), consenter("b"), consenter("c"), consenter("d")
	rotated := b
	rotated.Port = 7051
	add := func(id uint64) *pb.ConfChange {
		return &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: proto.Uint64(id)}
	}
	remove := func(id uint64) *pb.ConfChange {
		return &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(id)}
	}
	tests := []struct {
		name     string
		next     []channelconfig.Consenter
		wantIDs  []uint64
		wantNext uint64
		change   *pb.ConfChange
		err      bool
	}{
		{"unchanged", []channelconfig.Consenter{a, b, c}, []uint64{1, 2, 5}, 6, nil, false},
		{"reordered", []channelconfig.Consenter{c, a, b}, []uint64{5, 1, 2}, 6, nil, false},
		{"added gets next", []channelconfig.Consenter{a, b, c, d}, []uint64{1, 2, 5, 6}, 7, add(6), false},
		{"added first", []channelconfig.Consenter{d, a, b, c}, []uint64{6, 1, 2, 5}, 7, add(6), false},
		{"removed", []channelconfig.Consenter{a, c}, []uint64{1, 5}, 6, remove(2), false},
		{"rotated keeps the ID", []channelconfig.Consenter{a, rotated, c}, []uint64{1, 2, 5}, 6, nil, false},
		{"two added", []channelconfig.Consenter{a, b, c, d, consenter("e")}, nil, 0, nil, true},
		{"two removed", []channelconfig.Consenter{a}, nil, 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ComputeMembership([]uint64{1, 2, 5}, []channelconfig.Consenter{a, b, c}, tt.next, 6)
			if tt.err {
				if err == nil {
					t.Fatalf("got %+v, want an error", m)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.IDs, tt.wantIDs) || m.Next != tt.wantNext || !proto.Equal(m.Change, tt.change) {
				t.Fatalf("got IDs %v next %d change %v, want %v %d %v", m.IDs, m.Next, m.Change, tt.wantIDs, tt.wantNext, tt.change)
			}
			if wantRotated := uint64(0); tt.name == "rotated keeps the ID" {
				wantRotated = 2
				if m.Rotated != wantRotated {
					t.Fatalf("rotated %d, want %d", m.Rotated, wantRotated)
				}
			} else if m.Rotated != 0 {
				t.Fatalf("rotated %d, want none", m.Rotated)
			}
		})
	}
}

// TestUnacceptableQuorumLoss follows Fabric's etcdraft quorum check: a
// change is refused when the nodes alive now could not form a quorum of the
// new set, unless no quorum could be kept anyway.
func TestUnacceptableQuorumLoss(t *testing.T) {
	add := &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: proto.Uint64(4)}
	remove := func(id uint64) *pb.ConfChange {
		return &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(id)}
	}
	alive := func(ids ...uint64) map[uint64]bool {
		m := map[uint64]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	tests := []struct {
		name   string
		m      Membership
		active map[uint64]bool
		want   bool
	}{
		{"add to 3 with all alive", Membership{IDs: []uint64{1, 2, 3, 4}, Change: add}, alive(1, 2, 3), false},
		{"add to 3 with one down", Membership{IDs: []uint64{1, 2, 3, 4}, Change: add}, alive(1, 2), true},
		{"add to 1 (no fault tolerance either way)", Membership{IDs: []uint64{1, 4}, Change: add}, alive(1), false},
		{"add to 2 with both alive", Membership{IDs: []uint64{1, 2, 4}, Change: add}, alive(1, 2), false},
		{"add to 2 with one down", Membership{IDs: []uint64{1, 2, 4}, Change: add}, alive(1), true},
		{"remove a live node of 3", Membership{IDs: []uint64{1, 3}, Change: remove(2)}, alive(1, 2, 3), false},
		{"remove a live node while another is down", Membership{IDs: []uint64{1, 3}, Change: remove(2)}, alive(1, 2), true},
		{"remove the dead node", Membership{IDs: []uint64{1, 2}, Change: remove(3)}, alive(1, 2), false},
		{"rotate with all alive", Membership{IDs: []uint64{1, 2, 3}, Rotated: 2}, alive(1, 2, 3), false},
		{"rotate while another is down", Membership{IDs: []uint64{1, 2, 3}, Rotated: 2}, alive(1, 2), true},
		{"no change", Membership{IDs: []uint64{1, 2, 3}}, alive(1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.UnacceptableQuorumLoss(tt.active); got != tt.want {
				t.Fatalf("UnacceptableQuorumLoss = %v, want %v", got, tt.want)
			}
		})
	}
}

type staticSigner struct{}

func (staticSigner) Serialize() []byte           { return []byte("creator") }
func (staticSigner) Sign([]byte) ([]byte, error) { return []byte("sig"), nil }

func TestIsConfigEnvelope(t *testing.T) {
	for _, tc := range []struct {
		typ  cb.HeaderType
		want bool
	}{
		{cb.HeaderType_CONFIG, true},
		{cb.HeaderType_ENDORSER_TRANSACTION, false},
		{cb.HeaderType_CONFIG_UPDATE, false},
	} {
		env, err := envelope.NewSignedEnvelope(tc.typ, "ch", staticSigner{}, &cb.ConfigEnvelope{})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := proto.Marshal(env)
		if got := IsConfigEnvelope(raw); got != tc.want {
			t.Errorf("%s: IsConfigEnvelope = %v", tc.typ, got)
		}
	}
	for _, raw := range [][]byte{nil, {0xff}, {0x0a, 0x01}, {0x0a, 0x02, 0x0a, 0x00}} {
		if IsConfigEnvelope(raw) {
			t.Errorf("%x taken for a config envelope", raw)
		}
	}
}

func FuzzIsConfigEnvelope(f *testing.F) {
	env, _ := envelope.NewSignedEnvelope(cb.HeaderType_CONFIG, "ch", staticSigner{}, &cb.ConfigEnvelope{})
	raw, _ := proto.Marshal(env)
	f.Add(raw)
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		got := IsConfigEnvelope(raw)
		e := &cb.Envelope{}
		p := &cb.Payload{}
		ch := &cb.ChannelHeader{}
		if proto.Unmarshal(raw, e) != nil || proto.Unmarshal(e.Payload, p) != nil || proto.Unmarshal(p.GetHeader().GetChannelHeader(), ch) != nil {
			return // the wire walk may accept bytes proto refuses (invalid UTF-8 and the like)
		}
		if want := p.GetHeader() != nil && ch.Type == int32(cb.HeaderType_CONFIG); got != want {
			t.Fatalf("IsConfigEnvelope = %v, decoding says %v", got, want)
		}
	})
}
