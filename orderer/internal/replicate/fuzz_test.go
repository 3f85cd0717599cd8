package replicate_test

import (
	"testing"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/orderer/internal/replicate"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"
)

// FuzzVerify feeds arbitrary bytes as a pulled block: Verify must refuse or
// accept them without panicking.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, 2)
	bundle, err := channelconfig.FromBlock(fx.blocks[0])
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range fx.blocks {
		raw, _ := proto.Marshal(b)
		f.Add(raw)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		b := &cb.Block{}
		if proto.Unmarshal(raw, b) != nil {
			return
		}
		_ = replicate.Verify(b, 1, fx.blocks[0].Header, bundle)
		_ = replicate.Verify(b, 0, nil, nil)
	})
}
