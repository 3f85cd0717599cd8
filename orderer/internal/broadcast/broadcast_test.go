package broadcast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/policy"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
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
	bigConfig   bool               // ProposeConfig returns an envelope over AbsoluteMaxBytes
	batches     []int              // sizes of the OrderBatch calls
	refuse      func([]byte) error // when set, OrderBatch refuses the envelopes it fails
	holdEval    func([]byte)       // when set, Evaluate calls it with the signed data first
	evaluated   atomic.Int64       // Evaluate calls
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
	if f.holdEval != nil && len(signed) == 1 {
		f.holdEval(signed[0].Data)
	}
	defer f.evaluated.Add(1)
	if path != WritersPolicy || len(signed) != 1 || string(signed[0].Identity) != "alice" || string(signed[0].Signature) != "sig" {
		return errors.New("unexpected signed data")
	}
	return f.evalErr
}
func (f *fakeChannel) AbsoluteMaxBytes() uint32 { return 200 }
func (f *fakeChannel) ConfigSequence() uint64   { return f.seq }
func (f *fakeChannel) OrderBatch(_ context.Context, envs [][]byte, seq uint64) []error {
	f.batches = append(f.batches, len(envs))
	errs := make([]error, len(envs))
	for i, env := range envs {
		if errs[i] = f.orderErr; errs[i] != nil {
			continue
		}
		if f.refuse != nil {
			if errs[i] = f.refuse(env); errs[i] != nil {
				continue
			}
		}
		f.ordered = append(f.ordered, env)
		f.orderedSeqs = append(f.orderedSeqs, seq)
	}
	return errs
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

// sliceStream feeds envelopes to Handle as fast as it reads them and records
// the answers in order. Handle calls Recv from one goroutine and Send from
// another; read resps once Handle returned.
type sliceStream struct {
	envs  []*cb.Envelope
	next  int
	mu    sync.Mutex
	resps []*ab.BroadcastResponse
}

func (s *sliceStream) Context() context.Context { return context.Background() }
func (s *sliceStream) Recv() (*cb.Envelope, error) {
	if s.next == len(s.envs) {
		return nil, io.EOF
	}
	s.next++
	return s.envs[s.next-1], nil
}
func (s *sliceStream) Send(r *ab.BroadcastResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resps = append(s.resps, r)
	return nil
}

// accepted counts the SUCCESS answers.
func (s *sliceStream) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.resps {
		if r.Status == cb.Status_SUCCESS {
			n++
		}
	}
	return n
}

// TestStreamOrdersCheckedRunsTogether: envelopes already checked when the
// responder gets to them reach the consenter in one OrderBatch, in arrival
// order, and each is answered with its own outcome: an envelope the consenter
// refuses in the middle of a run fails alone.
func TestStreamOrdersCheckedRunsTogether(t *testing.T) {
	for _, tt := range []struct {
		refuseAt int // -1: none
		batches  []int
	}{
		{-1, []int{10}},
		{4, []int{10}},
	} {
		t.Run(fmt.Sprintf("refuse=%d", tt.refuseAt), func(t *testing.T) {
			const n = 10
			envs := make([]*cb.Envelope, n)
			raws := make([][]byte, n)
			for i := range envs {
				envs[i] = envelope("ch", cb.HeaderType_ENDORSER_TRANSACTION, "alice", []byte{byte(i)})
				raws[i] = mustMarshal(envs[i])
			}
			// The first envelope's check waits until every other one is
			// checked, so the responder finds them all ready behind it.
			ch := &fakeChannel{}
			release := make(chan struct{})
			ch.holdEval = func(payload []byte) {
				if string(payload) == string(envs[0].Payload) {
					<-release
				}
			}
			if tt.refuseAt >= 0 {
				ch.refuse = func(raw []byte) error {
					if string(raw) == string(raws[tt.refuseAt]) {
						return errors.New("config moved")
					}
					return nil
				}
			}
			s := &sliceStream{envs: envs}
			h := New(channels{"ch": ch}, nil, nil).WithWindow(n)
			done := make(chan error, 1)
			go func() { done <- h.Handle(s) }()
			for ch.evaluated.Load() < n-1 {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // the last check closes its channel
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if len(s.resps) != n {
				t.Fatalf("%d answers for %d envelopes", len(s.resps), n)
			}
			var want [][]byte
			for i, r := range s.resps {
				if i == tt.refuseAt {
					if r.Status != cb.Status_SERVICE_UNAVAILABLE || !strings.Contains(r.Info, "config moved") {
						t.Fatalf("refused envelope %d answered %s %q", i, r.Status, r.Info)
					}
					continue
				}
				if r.Status != cb.Status_SUCCESS {
					t.Fatalf("envelope %d answered %s %q", i, r.Status, r.Info)
				}
				want = append(want, raws[i])
			}
			if len(ch.ordered) != len(want) {
				t.Fatalf("ordered %d envelopes, want %d", len(ch.ordered), len(want))
			}
			for i := range want {
				if string(ch.ordered[i]) != string(want[i]) {
					t.Fatalf("ordered envelope %d out of arrival order", i)
				}
			}
			if fmt.Sprint(ch.batches) != fmt.Sprint(tt.batches) {
				t.Fatalf("OrderBatch sizes %v, want %v", ch.batches, tt.batches)
			}
		})
	}
}
