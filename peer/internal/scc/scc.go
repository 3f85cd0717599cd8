// Package scc owns the peer's configuration and query system chaincodes:
// cscc (JoinChain, GetChannels, GetConfigBlock) and qscc (GetChainInfo,
// GetBlockByNumber, GetBlockByHash, GetTransactionByID, GetBlockByTxID), with
// Fabric's argument and result formats and ACLs. They hold no state of their
// own and are safe for concurrent use.
package scc

import (
	"context"
	"fmt"
	"strconv"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/endorser"
	"github.com/cairn-ledger/cairn/peer/internal/ledger"
)

// Peer is what cscc changes and reads: the set of joined channels.
type Peer interface {
	JoinChannel(genesis *cb.Block) error
	ChannelIDs() []string
	Channel(id string) (endorser.Channel, bool)
	LedgerOf(id string) (*ledger.Ledger, bool)
}

func ok(payload []byte) *pb.Response { return &pb.Response{Status: 200, Payload: payload} }

func fail(format string, args ...any) *pb.Response {
	return &pb.Response{Status: 500, Message: fmt.Sprintf(format, args...)}
}

func marshal(m proto.Message) *pb.Response {
	b, err := proto.Marshal(m)
	if err != nil {
		return fail("marshal result: %v", err)
	}
	return ok(b)
}

// CSCC is the configuration system chaincode.
type CSCC struct {
	Peer Peer
}

// Invoke dispatches on the function name.
func (c *CSCC) Invoke(_ context.Context, inv endorser.Invocation) *pb.Response {
	args := inv.Proposal.Input.Args
	if len(args) == 0 {
		return fail("cscc: no function given")
	}
	fn := string(args[0])
	switch fn {
	case "JoinChain":
		if len(args) < 2 || len(args[1]) == 0 {
			return fail("cscc: JoinChain needs the genesis block as its argument")
		}
		if !inv.Creator.IsAdmin() {
			return fail("access denied for [JoinChain]: %s is not an admin of the peer's organisation", inv.Creator)
		}
		b, err := block.Unmarshal(args[1])
		if err != nil {
			return fail("cscc: JoinChain: %v", err)
		}
		if err := c.Peer.JoinChannel(b); err != nil {
			return fail("cannot create ledger from genesis block: %v", err)
		}
		return ok(nil)
	case "GetChannels":
		res := &pb.ChannelQueryResponse{}
		for _, id := range c.Peer.ChannelIDs() {
			res.Channels = append(res.Channels, &pb.ChannelInfo{ChannelId: id})
		}
		return marshal(res)
	case "GetConfigBlock":
		if len(args) < 2 {
			return fail("cscc: GetConfigBlock needs the channel name")
		}
		id := string(args[1])
		ch, found := c.Peer.Channel(id)
		l, _ := c.Peer.LedgerOf(id)
		if !found || l == nil {
			return fail("unknown channel %s", id)
		}
		if err := checkProposalACL(ch, inv, "cscc/GetConfigBlock"); err != nil {
			return fail("%v", err)
		}
		last, err := l.Block(l.Height() - 1)
		if err != nil {
			return fail("read last block: %v", err)
		}
		idx, err := block.LastConfigIndex(last)
		if err != nil {
			idx = 0
		}
		cfg, err := l.Block(idx)
		if err != nil {
			return fail("read config block %d: %v", idx, err)
		}
		return marshal(cfg)
	}
	return fail("cscc: unknown function %q", fn)
}

func checkProposalACL(ch endorser.Channel, inv endorser.Invocation, resource string) error {
	data, ident, sig := inv.Proposal.SignedData()
	return endorser.CheckACL(ch.Bundle(), resource, "/Channel/Application/Readers", []policy.SignedData{{Data: data, Identity: ident, Signature: sig}})
}

// QSCC is the ledger query system chaincode.
type QSCC struct {
	Peer Peer
}

// Invoke dispatches on the function name; args[1] names the channel.
func (q *QSCC) Invoke(_ context.Context, inv endorser.Invocation) *pb.Response {
	args := inv.Proposal.Input.Args
	if len(args) < 2 {
		return fail("incorrect number of arguments, %d", len(args))
	}
	fn, id := string(args[0]), string(args[1])
	ch, found := q.Peer.Channel(id)
	l, _ := q.Peer.LedgerOf(id)
	if !found || l == nil {
		return fail("invalid chain ID, %s", id)
	}
	if err := checkProposalACL(ch, inv, "qscc/"+fn); err != nil {
		return fail("%v", err)
	}
	arg := func() ([]byte, bool) {
		if len(args) < 3 || len(args[2]) == 0 {
			return nil, false
		}
		return args[2], true
	}
	switch fn {
	case "GetChainInfo":
		h := l.Height()
		last, err := l.Block(h - 1)
		if err != nil {
			return fail("failed to get block info: %v", err)
		}
		return marshal(&cb.BlockchainInfo{Height: h, CurrentBlockHash: block.HeaderHash(last.Header), PreviousBlockHash: last.Header.PreviousHash})
	case "GetBlockByNumber":
		a, okArg := arg()
		if !okArg {
			return fail("block number argument must not be empty")
		}
		n, err := strconv.ParseUint(string(a), 10, 64)
		if err != nil {
			return fail("failed to parse block number: %v", err)
		}
		b, err := l.Block(n)
		if err != nil {
			return fail("failed to get block number %d: %v", n, err)
		}
		return marshal(b)
	case "GetBlockByHash":
		a, okArg := arg()
		if !okArg {
			return fail("block hash argument must not be empty")
		}
		b, err := l.BlockByHash(a)
		if err != nil {
			return fail("failed to get block by hash: %v", err)
		}
		return marshal(b)
	case "GetTransactionByID":
		a, okArg := arg()
		if !okArg {
			return fail("transaction ID must not be empty")
		}
		b, err := l.BlockByTxID(string(a))
		if err != nil {
			return fail("failed to get transaction with id %s: %v", a, err)
		}
		code, _, _, err := l.TxValidationCode(string(a))
		if err != nil {
			return fail("failed to get transaction with id %s: %v", a, err)
		}
		for i := range b.Data.Data {
			if h, err := block.ChannelHeader(b, i); err == nil && h.TxId == string(a) {
				env, _ := block.Envelope(b, i)
				return marshal(&pb.ProcessedTransaction{TransactionEnvelope: env, ValidationCode: int32(code)})
			}
		}
		return fail("transaction %s not found in its block", a)
	case "GetBlockByTxID":
		a, okArg := arg()
		if !okArg {
			return fail("transaction ID must not be empty")
		}
		b, err := l.BlockByTxID(string(a))
		if err != nil {
			return fail("failed to get block for txID %s: %v", a, err)
		}
		return marshal(b)
	}
	return fail("requested function %s not found", fn)
}
