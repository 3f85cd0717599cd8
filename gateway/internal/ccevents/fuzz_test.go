package ccevents

import (
	"testing"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"
)

// FuzzFromBlock feeds arbitrary block bytes: FromBlock must return events or an
// error, never panic.
func FuzzFromBlock(f *testing.F) {
	env, _ := proto.Marshal(&common.Envelope{Payload: []byte{0x0a, 0x02, 0x0a, 0x00}})
	b := block.New(3, nil, [][]byte{env, {0xff}})
	block.SetTxFilter(b, []byte{0, 0})
	seed, _ := proto.Marshal(b)
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		b := &common.Block{}
		if proto.Unmarshal(raw, b) != nil {
			return
		}
		_, _ = FromBlock(b)
	})
}
