package block

import (
	"bytes"
	"errors"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func encodedBlock(t testing.TB, n int) []byte {
	t.Helper()
	data := make([][]byte, n)
	for i := range data {
		data[i] = bytes.Repeat([]byte{byte(i)}, 100+i)
	}
	b := New(7, []byte("previous"), data)
	b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = []byte("signatures")
	raw, err := proto.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// sameAsUnmarshal fails unless UnmarshalShared and Unmarshal agree on raw:
// both refuse it (with ErrMalformed), or both return equal blocks.
func sameAsUnmarshal(t *testing.T, raw []byte) *cb.Block {
	t.Helper()
	want, werr := Unmarshal(raw)
	got, gerr := UnmarshalShared(raw)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("Unmarshal error %v, UnmarshalShared error %v", werr, gerr)
	}
	if werr != nil {
		if !errors.Is(gerr, ErrMalformed) {
			t.Fatalf("UnmarshalShared error %v is not ErrMalformed", gerr)
		}
		return nil
	}
	if !proto.Equal(want, got) {
		t.Fatalf("blocks differ:\nUnmarshal       %v\nUnmarshalShared %v", want, got)
	}
	return got
}

func TestUnmarshalSharedAliasesData(t *testing.T) {
	raw := encodedBlock(t, 50)
	b := sameAsUnmarshal(t, raw)
	// The entries are raw's bytes, not copies ...
	e := b.Data.Data[3]
	raw[bytes.Index(raw, e)] ^= 0xff
	if e[0] != 3^0xff {
		t.Fatal("entry does not share raw's memory")
	}
	// ... and appending to one never writes into raw.
	before := append([]byte(nil), raw...)
	_ = append(b.Data.Data[0], 'x')
	if !bytes.Equal(raw, before) {
		t.Fatal("appending to an entry changed raw")
	}
}

func TestUnmarshalSharedMatchesUnmarshal(t *testing.T) {
	raw := encodedBlock(t, 5)
	// Unknown fields (at both levels), a repeated data message (merged), a
	// field of the wrong wire type, a bad data hash, truncations.
	var extra []byte
	extra = protowire.AppendTag(extra, 9, protowire.VarintType)
	extra = protowire.AppendVarint(extra, 42)
	var data []byte
	data = protowire.AppendTag(data, 1, protowire.BytesType)
	data = protowire.AppendBytes(data, []byte("more"))
	data = protowire.AppendTag(data, 5, protowire.Fixed32Type)
	data = protowire.AppendFixed32(data, 1)
	var wrongType []byte
	wrongType = protowire.AppendTag(wrongType, 2, protowire.VarintType)
	wrongType = protowire.AppendVarint(wrongType, 1)
	withData := protowire.AppendTag(append([]byte(nil), raw...), 2, protowire.BytesType)
	withData = protowire.AppendBytes(withData, data)
	cases := map[string][]byte{
		"plain":               raw,
		"unknown field":       append(append([]byte(nil), raw...), extra...),
		"second data message": withData, // data hash no longer matches: both refuse
		"wrong wire type":     append(append([]byte(nil), raw...), wrongType...),
		"empty":               {},
		"no header":           raw[bytes.IndexByte(raw, 0x12):],
		"garbage":             []byte("not a block at all"),
		"field number zero":   {0x02, 0x00},
		"bytes past the end":  {0x12, 0x7f, 0x01},
	}
	for i := 1; i < len(raw); i += len(raw) / 13 {
		cases["truncated"+string(rune('a'+i%26))] = raw[:i]
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) { sameAsUnmarshal(t, in) })
	}
}

func FuzzUnmarshalShared(f *testing.F) {
	f.Add(encodedBlock(f, 3))
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) { sameAsUnmarshal(t, raw) })
}

func BenchmarkUnmarshal500(b *testing.B) {
	raw := encodedBlock(b, 500)
	b.SetBytes(int64(len(raw)))
	b.Run("copying", func(b *testing.B) {
		for b.Loop() {
			if _, err := Unmarshal(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("shared", func(b *testing.B) {
		for b.Loop() {
			if _, err := UnmarshalShared(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestUnmarshalOwnSkipsOnlyTheDataHash(t *testing.T) {
	raw := encodedBlock(t, 5)
	want, err := Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalOwn(raw)
	if err != nil || !proto.Equal(want, got) {
		t.Fatalf("UnmarshalOwn = %v, %v; want %v", got, err, want)
	}
	// Altered data: only the hash check would notice.
	bad := bytes.Clone(raw)
	bad[bytes.Index(bad, bytes.Repeat([]byte{2}, 102))] ^= 1
	if _, err := UnmarshalShared(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("UnmarshalShared of altered data: %v", err)
	}
	if _, err := UnmarshalOwn(bad); err != nil {
		t.Fatalf("UnmarshalOwn checked the data hash: %v", err)
	}
	// Everything else is still checked.
	if _, err := UnmarshalOwn(raw[:len(raw)-3]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("UnmarshalOwn of a truncated block: %v", err)
	}
	if _, err := UnmarshalOwn(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("UnmarshalOwn of nothing: %v", err)
	}
}
