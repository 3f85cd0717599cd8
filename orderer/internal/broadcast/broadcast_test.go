package broadcast

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cairn-ledger/cairn/internal/policy"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"
)

type fakeChannel struct {
	seq         uint64   // the config sequence in force
	orderedSeqs []uint64 // config sequences ordered envelopes were validated at
	ordered     [][]byte
	configured  []uint64 // config sequences of configured envelopes
	evalErr     error
	orderErr    error
	proposeErr  error
	bigConfig   bool // ProposeConfig returns an envelope over AbsoluteMaxBytes
}

func (f *fakeChannel) ProposeConfig(update *cb.Envelope) (*cb.Envelope, uint64, error) {
	if f.proposeErr != nil {
		return nil, 0, f.proposeErr
	}
	cfg := envelope("ch", cb.HeaderType_CONFIG, "orderer", update.Payload)
	if f.bigConfig {
		cfg.Payload = make([]byte, 300)
	}
	return cfg, 7, nil
}

func (f *fakeChannel) Configure(_ context.Context, env []byte, seq uint64) error {
	if f.orderErr != nil {
		return f.orderErr
	}
	f.ordered = append(f.ordered, env)
	f.configured = append(f.configured, seq)
	return nil
}

func (f *fakeChannel) Evaluate(path string, signed []policy.SignedData) error {
	if path != WritersPolicy || len(signed) != 1 || string(signed[0].Identity) != "alice" || string(signed[0].Signature) != "sig" {
		return errors.New("unexpected signed data")
	}
	return f.evalErr
}
func (f *fakeChannel) AbsoluteMaxBytes() uint32 { return 200 }
func (f *fakeChannel) ConfigSequence() uint64   { return f.seq }
func (f *fakeChannel) Order(_ context.Context, env []byte, seq uint64) error {
	if f.orderErr != nil {
		return f.orderErr
	}
	f.ordered = append(f.ordered, env)
	f.orderedSeqs = append(f.orderedSeqs, seq)
	return nil
}

type channels map[string]*fakeChannel

func (c channels) Channel(id string) (Channel, bool) {
	ch, ok := c[id]
	return ch, ok
}

func mustMarshal(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	return b
}

func envelope(channel string, typ cb.HeaderType, creator string, data []byte) *cb.Envelope {
	payload := &cb.Payload{
		Header: &cb.Header{
			ChannelHeader:   mustMarshal(&cb.ChannelHeader{Type: int32(typ), ChannelId: channel, TxId: "tx"}),
			SignatureHeader: mustMarshal(&cb.SignatureHeader{Creator: []byte(creator), Nonce: []byte("n")}),
		},
		Data: data,
	}
	return &cb.Envelope{Payload: mustMarshal(payload), Signature: []byte("sig")}
}

func TestProcessStatuses(t *testing.T) {
	tests := []struct {
		name   string
		env    *cb.Envelope
		ch     *fakeChannel
		status cb.Status
		info   string
	}{
		{"ok", envelope("ch", cb.HeaderType_ENDORSER_TRANSACTION, "alice", []byte("d")), &fakeChannel{}, cb.Status_SUCCESS, ""},
		{"empty", &cb.Envelope{}, &fakeChannel{}, cb.Status_BAD_REQUEST, "message was empty"},
		{"garbage payload", &cb.Envelope{Payload: []byte{0xff, 0xff}}, &fakeChannel{}, cb.Status_BAD_REQUEST, "bad payload"},
		{"no header", &cb.Envelope{Payload: mustMarshal(&cb.Payload{Data: []byte("x")})}, &fakeChannel{}, cb.Status_BAD_REQUEST, "header is missing"},
		{"bad channel header", &cb.Envelope{Payload: mustMarshal(&cb.Payload{Header: &cb.Header{ChannelHeader: []byte{0xff}}})}, &fakeChannel{}, cb.Status_BAD_REQUEST, "bad channel header"},
		{"no channel id", envelope("", cb.HeaderType_ENDORSER_TRANSACTION, "alice", nil), &fakeChannel{}, cb.Status_BAD_REQUEST, "no channel ID"},
		{"unknown channel", envelope("other", cb.HeaderType_ENDORSER_TRANSACTION, "alice", nil), &fakeChannel{}, cb.Status_NOT_FOUND, "channel other does not exist"},
		{"config update", envelope("ch", cb.HeaderType_CONFIG_UPDATE, "alice", nil), &fakeChannel{}, cb.Status_SUCCESS, ""},
		{"config update unauthorised", envelope("ch", cb.HeaderType_CONFIG_UPDATE, "alice", nil), &fakeChannel{proposeErr: fmt.Errorf("mod_policy /Channel/Orderer/Admins: %w", policy.ErrNotSatisfied)}, cb.Status_FORBIDDEN, "/Channel/Orderer/Admins"},
		{"config update invalid", envelope("ch", cb.HeaderType_CONFIG_UPDATE, "alice", nil), &fakeChannel{proposeErr: errors.New("version mismatch")}, cb.Status_BAD_REQUEST, "version mismatch"},
		{"config update result too large", envelope("ch", cb.HeaderType_CONFIG_UPDATE, "alice", nil), &fakeChannel{bigConfig: true}, cb.Status_BAD_REQUEST, "exceeds the maximum 200 bytes"},
		{"config update not signed by a writer", envelope("ch", cb.HeaderType_CONFIG_UPDATE, "alice", nil), &fakeChannel{evalErr: errors.New("no writer")}, cb.Status_FORBIDDEN, "/Channel/Writers not satisfied"},
		{"config update no leader", envelope("ch", cb.HeaderType_CONFIG_UPDATE, "alice", nil), &fakeChannel{orderErr: errors.New("no raft leader")}, cb.Status_SERVICE_UNAVAILABLE, "no raft leader"},
		{"config", envelope("ch", cb.HeaderType_CONFIG, "alice", nil), &fakeChannel{}, cb.Status_BAD_REQUEST, "cannot be broadcast"},
		{"too large", envelope("ch", cb.HeaderType_ENDORSER_TRANSACTION, "alice", make([]byte, 300)), &fakeChannel{}, cb.Status_REQUEST_ENTITY_TOO_LARGE, "exceeds maximum allowed 200 bytes"},
		{"no creator", envelope("ch", cb.HeaderType_ENDORSER_TRANSACTION, "", nil), &fakeChannel{}, cb.Status_BAD_REQUEST, "no creator"},
		{"forbidden", envelope("ch", cb.HeaderType_ENDORSER_TRANSACTION, "alice", nil), &fakeChannel{evalErr: errors.New("signature by Org1MSP member is invalid")}, cb.Status_FORBIDDEN, "/Channel/Writers not satisfied: signature by Org1MSP member is invalid"},
		{"no leader", envelope("ch", cb.HeaderType_ENDORSER_TRANSACTION, "alice", nil), &fakeChannel{orderErr: errors.New("no raft leader")}, cb.Status_SERVICE_UNAVAILABLE, "no raft leader"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(channels{"ch": tt.ch}, nil, nil)
			resp := h.Process(context.Background(), tt.env)
			if resp.Status != tt.status || !strings.Contains(resp.Info, tt.info) {
				t.Fatalf("got %s %q, want %s containing %q", resp.Status, resp.Info, tt.status, tt.info)
			}
			if (tt.status == cb.Status_SUCCESS) != (len(tt.ch.ordered) == 1) {
				t.Fatalf("ordered %d envelopes", len(tt.ch.ordered))
			}
			if len(tt.ch.configured) == 1 && tt.ch.configured[0] != 7 {
				t.Fatalf("configured at sequence %d, want the one ProposeConfig validated at (7)", tt.ch.configured[0])
			}
		})
	}
}

func FuzzBroadcastEnvelope(f *testing.F) {
	f.Add(mustMarshal(envelope("ch", cb.HeaderType_ENDORSER_TRANSACTION, "alice", []byte("d"))))
	f.Add(mustMarshal(envelope("ch", cb.HeaderType_CONFIG_UPDATE, "alice", nil)))
	f.Add([]byte{0x0a, 0x02, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		env := &cb.Envelope{}
		if proto.Unmarshal(raw, env) != nil {
			return
		}
		h := New(channels{"ch": &fakeChannel{}}, nil, nil)
		resp := h.Process(context.Background(), env)
		if resp.Status != cb.Status_SUCCESS && resp.Info == "" {
			t.Fatalf("rejection %s without a message", resp.Status)
		}
	})
}

// TestOrderCarriesConfigSequence: an accepted envelope reaches the consenter
// with the config sequence its checks ran against, so the leader can tell an
// envelope validated before a config change.
func TestOrderCarriesConfigSequence(t *testing.T) {
	ch := &fakeChannel{seq: 4}
	h := New(channels{"ch": ch}, nil, nil)
	if resp := h.Process(context.Background(), envelope("ch", cb.HeaderType_ENDORSER_TRANSACTION, "alice", []byte("d"))); resp.Status != cb.Status_SUCCESS {
		t.Fatalf("%s %s", resp.Status, resp.Info)
	}
	if len(ch.orderedSeqs) != 1 || ch.orderedSeqs[0] != 4 {
		t.Fatalf("ordered at config sequences %v, want [4]", ch.orderedSeqs)
	}
}

// TestRevalidate: the chain's second check of an envelope validated at an
// older config sequence applies Broadcast's checks to the configuration in
// force and says why an envelope fails them.
func TestRevalidate(t *testing.T) {
	ok := mustMarshal(envelope("ch", cb.HeaderType_ENDORSER_TRANSACTION, "alice", []byte("d")))
	tests := []struct {
		name string
		raw  []byte
		ch   *fakeChannel
		want string // "" for no error
	}{
		{"still valid", ok, &fakeChannel{}, ""},
		{"writer no more", ok, &fakeChannel{evalErr: errors.New("Org2MSP is not a member")}, "FORBIDDEN: access denied: policy /Channel/Writers not satisfied: Org2MSP is not a member"},
		{"too large now", mustMarshal(envelope("ch", cb.HeaderType_ENDORSER_TRANSACTION, "alice", make([]byte, 300))), &fakeChannel{}, "REQUEST_ENTITY_TOO_LARGE"},
		{"another channel", mustMarshal(envelope("other", cb.HeaderType_ENDORSER_TRANSACTION, "alice", nil)), &fakeChannel{}, "NOT_FOUND"},
		{"config update", mustMarshal(envelope("ch", cb.HeaderType_CONFIG_UPDATE, "alice", nil)), &fakeChannel{}, "not a normal envelope"},
		{"garbage", []byte{0x0a, 0x05, 0x01}, &fakeChannel{}, "envelope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New(channels{"ch": tt.ch}, nil, nil).Revalidate(tt.raw)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Revalidate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Revalidate = %v, want an error containing %q", err, tt.want)
			}
			if len(tt.ch.ordered) != 0 {
				t.Fatal("Revalidate ordered an envelope")
			}
		})
	}
}
