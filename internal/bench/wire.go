package bench

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// encoded is a message already in its wire form. passCodec sends it as is,
// so a stream of pre-signed envelopes costs the client no marshalling.
type encoded []byte

// passCodec is gRPC's protobuf codec, except that an encoded value is
// written without re-encoding. It keeps the name "proto", so the server sees
// an ordinary application/grpc+proto call.
type passCodec struct{ proto encoding.CodecV2 }

func newPassCodec() passCodec { return passCodec{proto: encoding.GetCodecV2("proto")} }

func (c passCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(encoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c passCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (passCodec) Name() string { return "proto" }

// sigKey identifies a pre-signed envelope by the last 16 bytes of its
// signature (the end of S, which is random): a pointer-free map key, so a
// pool of a million envelopes adds nothing for the collector to scan.
type sigKey [16]byte

func keyOf(sig []byte) sigKey {
	var k sigKey
	copy(k[max(0, len(k)-len(sig)):], sig[max(0, len(sig)-len(k)):])
	return k
}

// gcHeadroom is the garbage the benchmark process may make between
// collections once the pool is built. cairn runs with GOGC=400; over a pool of
// gigabytes that would let a run allocate many gigabytes of fresh memory,
// each page faulted in, instead of reusing what the last collection freed.
const gcHeadroom = 1 << 30

// boundGarbage sets the GC percentage so that the heap grows by about
// gcHeadroom over what is live now, if that is lower than the current
// setting, and returns a func that restores the setting.
func boundGarbage() (restore func()) {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	live := s[0].Value.Uint64()
	old := debug.SetGCPercent(100)
	pct := old
	if live > 0 {
		pct = int(min(uint64(old), max(10, gcHeadroom*100/live)))
	}
	debug.SetGCPercent(pct)
	return func() { debug.SetGCPercent(old) }
}
