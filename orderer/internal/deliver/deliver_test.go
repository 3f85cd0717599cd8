package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/policy"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type fakeChannel struct {
	mu      sync.Mutex
	blocks  []*cb.Block
	grew    chan struct{}
	evalErr error
}

func newChannel(n int) *fakeChannel {
	c := &fakeChannel{grew: make(chan struct{})}
	for range n {
		c.add()
	}
	return c
}

func (c *fakeChannel) add() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blocks = append(c.blocks, block.New(uint64(len(c.blocks)), nil, nil))
	close(c.grew)
	c.grew = make(chan struct{})
}

func (c *fakeChannel) Evaluate(path string, _ []policy.SignedData) error {
	if path != ReadersPolicy {
		return errors.New("wrong policy " + path)
	}
	return c.evalErr
}
func (c *fakeChannel) Height() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return uint64(len(c.blocks))
}
func (c *fakeChannel) Block(n uint64) (*cb.Block, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n >= uint64(len(c.blocks)) {
		return nil, errors.New("not found")
	}
	return c.blocks[n], nil
}
func (c *fakeChannel) Wait(ctx context.Context, n uint64) error {
	for {
		c.mu.Lock()
		h, grew := uint64(len(c.blocks)), c.grew
		c.mu.Unlock()
		if h > n {
			return nil
		}
		select {
		case <-grew:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type channels map[string]*fakeChannel

func (c channels) Channel(id string) (Channel, bool) {
	ch, ok := c[id]
	return ch, ok
}

type fakeStream struct {
	ctx  context.Context
	reqs chan *cb.Envelope
	out  chan *ab.DeliverResponse
}

func newStream(ctx context.Context, reqs ...*cb.Envelope) *fakeStream {
	s := &fakeStream{ctx: ctx, reqs: make(chan *cb.Envelope, len(reqs)), out: make(chan *ab.DeliverResponse, 100)}
	for _, r := range reqs {
		s.reqs <- r
	}
	close(s.reqs)
	return s
}
func (s *fakeStream) Context() context.Context { return s.ctx }
func (s *fakeStream) Recv() (*cb.Envelope, error) {
	e, ok := <-s.reqs
	if !ok {
		return nil, io.EOF
	}
	return e, nil
}
func (s *fakeStream) Send(r *ab.DeliverResponse) error { s.out <- r; return nil }

func mustMarshal(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	return b
}

func pos(n uint64) *ab.SeekPosition {
	return &ab.SeekPosition{Type: &ab.SeekPosition_Specified{Specified: &ab.SeekSpecified{Number: n}}}
}

var (
	oldest = &ab.SeekPosition{Type: &ab.SeekPosition_Oldest{Oldest: &ab.SeekOldest{}}}
	newest = &ab.SeekPosition{Type: &ab.SeekPosition_Newest{Newest: &ab.SeekNewest{}}}
)

func seekEnv(channel string, start, stop *ab.SeekPosition, behavior ab.SeekInfo_SeekBehavior) *cb.Envelope {
	p := &cb.Payload{
		Header: &cb.Header{
			ChannelHeader:   mustMarshal(&cb.ChannelHeader{Type: int32(cb.HeaderType_DELIVER_SEEK_INFO), ChannelId: channel, Timestamp: timestamppb.Now()}),
			SignatureHeader: mustMarshal(&cb.SignatureHeader{Creator: []byte("reader")}),
		},
		Data: mustMarshal(&ab.SeekInfo{Start: start, Stop: stop, Behavior: behavior}),
	}
	return &cb.Envelope{Payload: mustMarshal(p), Signature: []byte("sig")}
}

// collect runs a stream to its end and renders what it received.
func collect(t *testing.T, h *Handler, s *fakeStream) (blocks []uint64, statuses []cb.Status) {
	t.Helper()
	if err := h.Handle(s); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	close(s.out)
	for r := range s.out {
		switch x := r.Type.(type) {
		case *ab.DeliverResponse_Block:
			blocks = append(blocks, x.Block.Header.Number)
		case *ab.DeliverResponse_Status:
			statuses = append(statuses, x.Status)
		}
	}
	return blocks, statuses
}

func TestSeekVariants(t *testing.T) {
	ch := newChannel(5)
	h := New(channels{"ch": ch}, nil, nil, 0)
	tests := []struct {
		name     string
		env      *cb.Envelope
		blocks   string
		statuses string
	}{
		{"oldest to newest", seekEnv("ch", oldest, newest, ab.SeekInfo_BLOCK_UNTIL_READY), "[0 1 2 3 4]", "[SUCCESS]"},
		{"newest only", seekEnv("ch", newest, newest, ab.SeekInfo_FAIL_IF_NOT_READY), "[4]", "[SUCCESS]"},
		{"specified range", seekEnv("ch", pos(1), pos(3), ab.SeekInfo_FAIL_IF_NOT_READY), "[1 2 3]", "[SUCCESS]"},
		{"fail if not ready", seekEnv("ch", pos(3), pos(9), ab.SeekInfo_FAIL_IF_NOT_READY), "[3 4]", "[NOT_FOUND]"},
		{"start not ready", seekEnv("ch", pos(7), pos(7), ab.SeekInfo_FAIL_IF_NOT_READY), "[]", "[NOT_FOUND]"},
		{"stop before start", seekEnv("ch", pos(3), pos(1), ab.SeekInfo_BLOCK_UNTIL_READY), "[]", "[BAD_REQUEST]"},
		{"unknown channel", seekEnv("nope", oldest, newest, ab.SeekInfo_BLOCK_UNTIL_READY), "[]", "[NOT_FOUND]"},
		{"malformed", &cb.Envelope{Payload: []byte{0xff}}, "[]", "[BAD_REQUEST]"},
		{"no seek info", func() *cb.Envelope { e := seekEnv("ch", nil, nil, 0); return e }(), "[]", "[BAD_REQUEST]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blocks, statuses := collect(t, h, newStream(context.Background(), tt.env))
			if got := fmtU(blocks); got != tt.blocks {
				t.Errorf("blocks %s, want %s", got, tt.blocks)
			}
			if got := fmtS(statuses); got != tt.statuses {
				t.Errorf("statuses %s, want %s", got, tt.statuses)
			}
		})
	}
}

func TestSeveralRequestsOnOneStream(t *testing.T) {
	h := New(channels{"ch": newChannel(3)}, nil, nil, 0)
	blocks, statuses := collect(t, h, newStream(context.Background(),
		seekEnv("ch", pos(0), pos(0), ab.SeekInfo_BLOCK_UNTIL_READY),
		seekEnv("ch", pos(2), pos(2), ab.SeekInfo_BLOCK_UNTIL_READY)))
	if fmtU(blocks) != "[0 2]" || fmtS(statuses) != "[SUCCESS SUCCESS]" {
		t.Fatalf("got %v %v", blocks, statuses)
	}
}

func TestForbidden(t *testing.T) {
	ch := newChannel(2)
	ch.evalErr = errors.New("not a reader")
	h := New(channels{"ch": ch}, nil, nil, 0)
	blocks, statuses := collect(t, h, newStream(context.Background(), seekEnv("ch", oldest, newest, ab.SeekInfo_BLOCK_UNTIL_READY)))
	if len(blocks) != 0 || fmtS(statuses) != "[FORBIDDEN]" {
		t.Fatalf("got %v %v", blocks, statuses)
	}
}

func TestStaleTimestamp(t *testing.T) {
	h := New(channels{"ch": newChannel(2)}, nil, func() time.Time { return time.Now().Add(time.Hour) }, 0)
	_, statuses := collect(t, h, newStream(context.Background(), seekEnv("ch", oldest, newest, ab.SeekInfo_BLOCK_UNTIL_READY)))
	if fmtS(statuses) != "[BAD_REQUEST]" {
		t.Fatalf("got %v", statuses)
	}
}

func TestBlockUntilReadyWaitsAndEndsOnCancel(t *testing.T) {
	ch := newChannel(1)
	h := New(channels{"ch": ch}, nil, nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newStream(ctx, seekEnv("ch", pos(0), pos(math.MaxUint64), ab.SeekInfo_BLOCK_UNTIL_READY))
	done := make(chan error, 1)
	go func() { done <- h.Handle(s) }()
	next := func() uint64 {
		select {
		case r := <-s.out:
			return r.GetBlock().GetHeader().GetNumber()
		case <-time.After(5 * time.Second):
			t.Fatal("no block")
			return 0
		}
	}
	if n := next(); n != 0 {
		t.Fatalf("got block %d", n)
	}
	ch.add()
	ch.add()
	if a, b := next(), next(); a != 1 || b != 2 {
		t.Fatalf("got blocks %d %d", a, b)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Handle after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Handle did not end when the stream's context ended")
	}
}

func fmtU(v []uint64) string    { return fmt.Sprint(v) }
func fmtS(v []cb.Status) string { return fmt.Sprint(v) }
