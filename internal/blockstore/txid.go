package blockstore

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
)

// Field numbers on the path Envelope.payload → Payload.header →
// Header.channel_header.
const (
	fieldEnvelopePayload     = 1
	fieldPayloadHeader       = 1
	fieldHeaderChannelHeader = 1
)

// TxID returns the tx ID in the channel header of a marshalled envelope, as
// proto-decoding the envelope, its payload and its channel header would, and
// ok=false where that decoding fails. It finds the channel header by walking
// the wire format, so the payload (most of the envelope) is neither copied nor
// decoded; only the small channel header is decoded in full. An envelope whose
// path repeats a field (which protobuf would merge) takes the full decode.
func TxID(raw []byte) (string, bool) {
	payload, ok := onlyBytesField(raw, fieldEnvelopePayload)
	if !ok {
		return slowTxID(raw)
	}
	header, ok := onlyBytesField(payload, fieldPayloadHeader)
	if !ok {
		return slowTxID(raw)
	}
	if header == nil {
		return "", false // no header: ChannelHeader decoding fails too
	}
	chdr, ok := onlyBytesField(header, fieldHeaderChannelHeader)
	if !ok {
		return slowTxID(raw)
	}
	ch := &cb.ChannelHeader{}
	if err := proto.Unmarshal(chdr, ch); err != nil {
		return "", false
	}
	return ch.TxId, true
}

// onlyBytesField returns the value of length-delimited field num of the
// message in raw (nil if absent). ok is false if raw is not a well-formed
// message or holds the field more than once; then only a full decode can say.
func onlyBytesField(raw []byte, num protowire.Number) (v []byte, ok bool) {
	seen := false
	for len(raw) > 0 {
		n, typ, l := protowire.ConsumeTag(raw)
		if l < 0 || n > protowire.MaxValidNumber {
			return nil, false
		}
		raw = raw[l:]
		if n == num && typ == protowire.BytesType {
			val, m := protowire.ConsumeBytes(raw)
			if m < 0 || seen {
				return nil, false
			}
			v, seen = val, true
			raw = raw[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(n, typ, raw)
		if m < 0 {
			return nil, false
		}
		raw = raw[m:]
	}
	return v, true
}

// slowTxID decodes the envelope in full, as block.ChannelHeader does.
func slowTxID(raw []byte) (string, bool) {
	env := &cb.Envelope{}
	if err := proto.Unmarshal(raw, env); err != nil {
		return "", false
	}
	p := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, p); err != nil || p.Header == nil {
		return "", false
	}
	ch := &cb.ChannelHeader{}
	if err := proto.Unmarshal(p.Header.ChannelHeader, ch); err != nil {
		return "", false
	}
	return ch.TxId, true
}
