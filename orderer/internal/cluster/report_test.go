package cluster

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/protos/clusterpb"
	pb "go.etcd.io/raft/v3/raftpb"
)

// recorder is a chain.Reporter that remembers what it was told.
type recorder struct {
	mu          sync.Mutex
	unreachable map[uint64]int
	snapshots   []bool
	changed     chan struct{}
}

func newRecorder() *recorder {
	return &recorder{unreachable: map[uint64]int{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) ReportUnreachable(id uint64) {
	r.mu.Lock()
	r.unreachable[id]++
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) ReportSnapshot(_ uint64, ok bool) {
	r.mu.Lock()
	r.snapshots = append(r.snapshots, ok)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitFor polls cond (under r.mu) until it holds or 5 s pass.
func (r *recorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestReportsDroppedMessagesAndSnapshots(t *testing.T) {
	t.Run("remote down", func(t *testing.T) {
		a, b := newNode(t, "a"), newNode(t, "b")
		c, err := New(Config{ClientCert: a.cert, Channels: fakeChannels{}, SendQueueSize: 4, MinBackoff: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		lis, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := lis.Addr().String()
		lis.Close()
		tr := c.Transport("ch", 1, map[uint64]channelconfig.Consenter{1: a.consenter(dead), 2: b.consenter(dead)})
		rec := newRecorder()
		tr.(*Transport).SetReporter(rec)
		// The queue holds 4; the rest are dropped, the snapshot among them.
		for range 8 {
			tr.Send([]*pb.Message{raftMsg(pb.MessageType_MsgApp, 1, 2)})
		}
		tr.Send([]*pb.Message{raftMsg(pb.MessageType_MsgSnap, 1, 2)})
		rec.waitFor(t, "unreachable and failed-snapshot reports", func() bool {
			return rec.unreachable[2] >= 5 && len(rec.snapshots) == 1 && !rec.snapshots[0]
		})
	})

	t.Run("snapshot written", func(t *testing.T) {
		pa, pb1 := startPeer(t, newNode(t, "a")), startPeer(t, newNode(t, "b"))
		members := map[uint64]channelconfig.Consenter{1: pa.consenter(pa.addr), 2: pb1.consenter(pb1.addr)}
		ta := pa.c.Transport("ch", 1, members)
		pb1.c.Transport("ch", 2, members)
		rec := newRecorder()
		ta.(*Transport).SetReporter(rec)
		snap := raftMsg(pb.MessageType_MsgSnap, 1, 2)
		snap.Snapshot = &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(1))}}
		ta.Send([]*pb.Message{snap})
		rec.waitFor(t, "a successful snapshot report", func() bool {
			return len(rec.snapshots) > 0 && rec.snapshots[len(rec.snapshots)-1]
		})
		select {
		case m := <-pb1.ch.stepped:
			if m.GetType() != pb.MessageType_MsgSnap {
				t.Fatalf("stepped %v, want the snapshot", m.GetType())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("snapshot did not arrive")
		}
	})
}

// TestAnswerAcceptedPrefix: a batch the remote accepted only in part
// completes the accepted prefix and refuses the rest with the remote's reason.
func TestAnswerAcceptedPrefix(t *testing.T) {
	r := &remote{id: 2, pending: map[uint64][]*submission{}}
	batch := make([]*submission, 3)
	for i := range batch {
		batch[i] = &submission{env: []byte{byte(i)}, resp: make(chan error, 1)}
	}
	r.pending[5] = batch
	r.answer(&clusterpb.SubmitResponse{RequestId: 5, Status: clusterpb.SubmitStatus_SUBMIT_STATUS_UNAVAILABLE, Info: "leader stepped down", Accepted: 1})
	if err := <-batch[0].resp; err != nil {
		t.Fatalf("accepted envelope answered %v", err)
	}
	for _, s := range batch[1:] {
		err := <-s.resp
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "leader stepped down") {
			t.Fatalf("envelope after the accepted prefix answered %v", err)
		}
	}
	if len(r.pending) != 0 {
		t.Fatal("answered request still pending")
	}
}
