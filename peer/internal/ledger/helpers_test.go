package ledger

import (
	"fmt"
	"testing"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cairn-ledger/cairn/internal/block"
)

const testChannel = "testchannel"

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatalf("marshal %T: %v", m, err)
	}
	return b
}

// endorserEnvelope wraps results (the marshalled rwset) the way a Fabric
// client submits an endorsed transaction.
func endorserEnvelope(tb testing.TB, txID string, results []byte) []byte {
	tb.Helper()
	ch := &common.ChannelHeader{
		Type:      int32(common.HeaderType_ENDORSER_TRANSACTION),
		TxId:      txID,
		ChannelId: testChannel,
		Timestamp: timestamppb.New(timestamppb.Now().AsTime()),
	}
	sh := &common.SignatureHeader{Creator: []byte("creator"), Nonce: []byte("nonce")}
	hdr := mustMarshal(tb, sh)
	cca := mustMarshal(tb, &peer.ChaincodeAction{Results: results})
	prp := mustMarshal(tb, &peer.ProposalResponsePayload{ProposalHash: []byte("h"), Extension: cca})
	ccap := mustMarshal(tb, &peer.ChaincodeActionPayload{
		ChaincodeProposalPayload: []byte("input"),
		Action:                   &peer.ChaincodeEndorsedAction{ProposalResponsePayload: prp},
	})
	tx := mustMarshal(tb, &peer.Transaction{Actions: []*peer.TransactionAction{{Header: hdr, Payload: ccap}}})
	payload := mustMarshal(tb, &common.Payload{
		Header: &common.Header{ChannelHeader: mustMarshal(tb, ch), SignatureHeader: hdr},
		Data:   tx,
	})
	return mustMarshal(tb, &common.Envelope{Payload: payload, Signature: []byte("sig")})
}

func configEnvelope(tb testing.TB) []byte {
	tb.Helper()
	ch := &common.ChannelHeader{Type: int32(common.HeaderType_CONFIG), ChannelId: testChannel}
	payload := mustMarshal(tb, &common.Payload{
		Header: &common.Header{ChannelHeader: mustMarshal(tb, ch)},
		Data:   mustMarshal(tb, &common.ConfigEnvelope{Config: &common.Config{ChannelGroup: &common.ConfigGroup{}}}),
	})
	return mustMarshal(tb, &common.Envelope{Payload: payload})
}

// rws builds a TxReadWriteSet from per-namespace KVRWSets, in the order given.
func rws(tb testing.TB, nss ...any) *rwset.TxReadWriteSet {
	tb.Helper()
	out := &rwset.TxReadWriteSet{DataModel: rwset.TxReadWriteSet_KV}
	for i := 0; i < len(nss); i += 2 {
		out.NsRwset = append(out.NsRwset, &rwset.NsReadWriteSet{
			Namespace: nss[i].(string),
			Rwset:     mustMarshal(tb, nss[i+1].(*kvrwset.KVRWSet)),
		})
	}
	return out
}

func ver(b, t uint64) *kvrwset.Version { return &kvrwset.Version{BlockNum: b, TxNum: t} }

// nextBlock builds the ledger's next block from raw envelopes.
func nextBlock(tb testing.TB, l *Ledger, envs ...[]byte) *common.Block {
	tb.Helper()
	h := l.blocks.Height()
	var prev []byte
	if h > 0 {
		last, err := l.Block(h - 1)
		if err != nil {
			tb.Fatalf("last block: %v", err)
		}
		prev = block.HeaderHash(last.Header)
	}
	return block.New(h, prev, envs)
}

func allValid(n int) []peer.TxValidationCode {
	return make([]peer.TxValidationCode, n) // VALID is 0
}

// commitRWSets commits one block with one endorser tx per rwset (tx IDs
// prefix0, prefix1, ...) and returns the final codes.
func commitRWSets(tb testing.TB, l *Ledger, prefix string, sets ...*rwset.TxReadWriteSet) []peer.TxValidationCode {
	tb.Helper()
	envs := make([][]byte, len(sets))
	for i, s := range sets {
		envs[i] = endorserEnvelope(tb, fmt.Sprintf("%s%d", prefix, i), mustMarshal(tb, s))
	}
	codes, err := l.Commit(nextBlock(tb, l, envs...), allValid(len(envs)))
	if err != nil {
		tb.Fatalf("commit: %v", err)
	}
	return codes
}

func writes(kv ...string) *kvrwset.KVRWSet {
	s := &kvrwset.KVRWSet{}
	for i := 0; i < len(kv); i += 2 {
		s.Writes = append(s.Writes, &kvrwset.KVWrite{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return s
}

func openTestLedger(tb testing.TB, dir string) *Ledger {
	tb.Helper()
	l, err := Open(Config{Dir: dir, NoSync: true})
	if err != nil {
		tb.Fatalf("open ledger: %v", err)
	}
	return l
}

func newTestLedger(tb testing.TB) *Ledger {
	tb.Helper()
	l := openTestLedger(tb, tb.TempDir())
	tb.Cleanup(func() { l.Close() })
	return l
}

// simulate runs f in a fresh simulator and returns its rwset.
func simulate(tb testing.TB, l *Ledger, txID string, f func(s *TxSimulator)) *rwset.TxReadWriteSet {
	tb.Helper()
	s, err := l.NewTxSimulator(txID)
	if err != nil {
		tb.Fatalf("new simulator: %v", err)
	}
	defer s.Done()
	f(s)
	out, err := s.Results()
	if err != nil {
		tb.Fatalf("results: %v", err)
	}
	return out
}

// stateDump is every key of the given namespaces with value, version and
// metadata, for comparing two ledgers.
func stateDump(tb testing.TB, l *Ledger, nss ...string) map[string]string {
	tb.Helper()
	snap, err := l.state.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	defer snap.Release()
	out := map[string]string{}
	for _, ns := range nss {
		it := snap.Range(ns, "", "")
		for {
			kv, err := it.Next()
			if err != nil {
				tb.Fatal(err)
			}
			if kv == nil {
				break
			}
			out[ns+"/"+kv.Key] = fmt.Sprintf("%q@%d.%d md=%x", kv.Value, kv.Version.BlockNum, kv.Version.TxNum, kv.Metadata)
		}
		it.Close()
	}
	return out
}
