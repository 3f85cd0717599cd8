package deliver

import (
	"context"
	"testing"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// FuzzDeliverSeekInfo feeds arbitrary SeekInfo bytes (inside a well-formed
// envelope) and arbitrary envelope payloads to the Deliver handler: every
// request must end with one status and no panic, and never hang.
func FuzzDeliverSeekInfo(f *testing.F) {
	seek := mustMarshal(&ab.SeekInfo{
		Start:    &ab.SeekPosition{Type: &ab.SeekPosition_Oldest{Oldest: &ab.SeekOldest{}}},
		Stop:     &ab.SeekPosition{Type: &ab.SeekPosition_Newest{Newest: &ab.SeekNewest{}}},
		Behavior: ab.SeekInfo_FAIL_IF_NOT_READY,
	})
	f.Add(seek, false)
	f.Add([]byte{0x0a, 0x04, 0x1a, 0x02, 0x08, 0x05}, false)
	f.Add([]byte{0xff, 0x01}, true)
	f.Fuzz(func(t *testing.T, data []byte, rawPayload bool) {
		ch := newChannel(3)
		h := New(channels{"ch": ch}, nil, time.Now, time.Hour)
		var payload []byte
		if rawPayload {
			payload = data
		} else {
			payload = mustMarshal(&cb.Payload{
				Header: &cb.Header{
					ChannelHeader: mustMarshal(&cb.ChannelHeader{
						Type: int32(cb.HeaderType_DELIVER_SEEK_INFO), ChannelId: "ch", Timestamp: timestamppb.Now(),
					}),
					SignatureHeader: mustMarshal(&cb.SignatureHeader{Creator: []byte("c"), Nonce: []byte("n")}),
				},
				Data: data,
			})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s := newStream(ctx, &cb.Envelope{Payload: payload, Signature: []byte("s")})
		done := make(chan error, 1)
		go func() { done <- h.Handle(s) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatal("Deliver handler did not return")
		}
		statuses := 0
		for len(s.out) > 0 {
			if _, ok := (<-s.out).Type.(*ab.DeliverResponse_Status); ok {
				statuses++
			}
		}
		// A request that waits (BLOCK_UNTIL_READY past the end) ends with the
		// context and sends no status; any other request ends with exactly one.
		if statuses > 1 {
			t.Fatalf("%d statuses for one request", statuses)
		}
	})
}
