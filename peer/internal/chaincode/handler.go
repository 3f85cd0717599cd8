package chaincode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// handler is one registered chaincode stream.
type handler struct {
	s         *Support
	log       *slog.Logger
	packageID string
	out       chan *peer.ChaincodeMessage // drained by the sending goroutine
	greeting  []*peer.ChaincodeMessage    // REGISTERED, READY; queued by register
	sem       chan struct{}               // bounds request goroutines

	done     chan struct{} // closed by stop
	stopOnce sync.Once
	stopErr  error

	mu  sync.Mutex
	txs map[txKey]*txContext
}

type txKey struct{ channelID, txID string }

// txContext is one in-flight transaction.
type txContext struct {
	key       txKey
	namespace string
	result    chan *peer.ChaincodeMessage // COMPLETED or ERROR; buffered 1

	// ctx is the execution's context, stored so that chaincode-to-chaincode
	// calls made from request goroutines share the top-level deadline; it
	// lives exactly as long as the transaction.
	ctx      context.Context
	proposal *peer.SignedProposal
	callees  Callees
	depth    int

	// mu serializes simulator access and guards the fields below.
	mu       sync.Mutex
	sim      TxSimulator
	finished bool
	queries  map[string]*query
	queryN   int
}

func (h *handler) stop(err error) {
	h.stopOnce.Do(func() {
		h.stopErr = err
		close(h.done)
	})
}

// reason is why the stream ended; valid once done is closed.
func (h *handler) reason() error {
	<-h.done
	return h.stopErr
}

// send queues msg for the chaincode.
func (h *handler) send(ctx context.Context, msg *peer.ChaincodeMessage) error {
	select {
	case h.out <- msg:
		return nil
	case <-h.done:
		return h.reason()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *handler) addTx(ctx context.Context, inv Invocation, sim TxSimulator, depth int) (*txContext, error) {
	key := txKey{inv.ChannelID, inv.TxID}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.txs[key]; ok {
		return nil, fmt.Errorf("execute %s: %w: channel %q txid %s", inv.Namespace, ErrDuplicateTxID, inv.ChannelID, inv.TxID)
	}
	tx := &txContext{
		key:       key,
		namespace: inv.Namespace,
		result:    make(chan *peer.ChaincodeMessage, 1),
		ctx:       ctx,
		proposal:  inv.SignedProposal,
		callees:   inv.Callees,
		depth:     depth,
		sim:       sim,
	}
	h.txs[key] = tx
	return tx, nil
}

// removeTx ends a transaction: later requests for it get an error and its
// simulator is never touched again.
func (h *handler) removeTx(tx *txContext) {
	h.mu.Lock()
	if h.txs[tx.key] == tx {
		delete(h.txs, tx.key)
	}
	h.mu.Unlock()
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.finished = true
	for id, q := range tx.queries {
		q.close()
		delete(tx.queries, id)
	}
	tx.sim = nil
}

func (h *handler) tx(channelID, txID string) *txContext {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.txs[txKey{channelID, txID}]
}

// serve runs one stream from REGISTER to disconnect.
func (s *Support) serve(stream Stream) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stopWithRoot := context.AfterFunc(s.ctx, cancel)
	defer stopWithRoot()

	type received struct {
		msg *peer.ChaincodeMessage
		err error
	}
	in := make(chan received)
	// Recv cannot be interrupted except by ending the RPC, which happens
	// when Register returns; so this goroutine is tracked by Support rather
	// than waited for here.
	if !s.goTracked(func() {
		for {
			msg, err := stream.Recv()
			select {
			case in <- received{msg, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}) {
		return ErrClosed
	}
	recv := func() (*peer.ChaincodeMessage, error) {
		select {
		case r := <-in:
			return r.msg, r.err
		case <-ctx.Done():
			if s.ctx.Err() != nil {
				return nil, ErrClosed
			}
			return nil, ctx.Err()
		}
	}

	first, err := recv()
	if err != nil {
		return fmt.Errorf("receive REGISTER: %w", err)
	}
	packageID, err := registration(first)
	if err != nil {
		_ = stream.Send(errorReply(first, err))
		return err
	}
	params, err := proto.Marshal(&peer.ChaincodeAdditionalParams{
		UseWriteBatch:          true,
		MaxSizeWriteBatch:      s.cfg.MaxWriteBatch,
		UseGetMultipleKeys:     true,
		MaxSizeGetMultipleKeys: s.cfg.MaxGetMultipleKeys,
	})
	if err != nil {
		return fmt.Errorf("marshal READY params: %w", err)
	}
	h := &handler{
		greeting: []*peer.ChaincodeMessage{
			{Type: peer.ChaincodeMessage_REGISTERED},
			// The shim reads its fast-path settings from READY's payload.
			{Type: peer.ChaincodeMessage_READY, Payload: params},
		},
		s:         s,
		log:       s.log.With("package_id", packageID),
		packageID: packageID,
		out:       make(chan *peer.ChaincodeMessage, 64),
		sem:       make(chan struct{}, s.cfg.MaxConcurrentRequests),
		done:      make(chan struct{}),
		txs:       map[txKey]*txContext{},
	}
	if err := s.register(h); err != nil {
		_ = stream.Send(errorReply(first, err))
		if errors.Is(err, ErrClosed) {
			return err
		}
		return fmt.Errorf("%w: %w", errDuplicateRegister, err)
	}
	defer s.deregister(h)

	var workers sync.WaitGroup
	workers.Add(1)
	go func() {
		defer workers.Done()
		h.sendLoop(ctx, stream)
	}()
	// Stop the stream before waiting for workers: they exit on done.
	defer workers.Wait()
	err = h.chat(ctx, recv, &workers)
	h.stop(err)
	h.log.Info("chaincode disconnected", "reason", err)
	if errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func registration(msg *peer.ChaincodeMessage) (string, error) {
	if msg.GetType() != peer.ChaincodeMessage_REGISTER {
		return "", fmt.Errorf("%w: first message is %s, want REGISTER", errBadRegister, msg.GetType())
	}
	id := &peer.ChaincodeID{}
	if err := proto.Unmarshal(msg.GetPayload(), id); err != nil {
		return "", fmt.Errorf("%w: decode ChaincodeID: %w", errBadRegister, err)
	}
	if id.GetName() == "" {
		return "", fmt.Errorf("%w: empty chaincode name", errBadRegister)
	}
	return id.GetName(), nil
}

func (h *handler) sendLoop(ctx context.Context, stream Stream) {
	for {
		select {
		case msg := <-h.out:
			if err := stream.Send(msg); err != nil {
				h.stop(fmt.Errorf("send %s to chaincode: %w", msg.GetType(), err))
				return
			}
		case <-h.done:
			return
		case <-ctx.Done():
			h.stop(ctx.Err())
			return
		}
	}
}

// chat dispatches the chaincode's messages until the stream ends.
func (h *handler) chat(ctx context.Context, recv func() (*peer.ChaincodeMessage, error), workers *sync.WaitGroup) error {
	h.log.Info("chaincode registered")

	for {
		msg, err := recv()
		if err != nil {
			return fmt.Errorf("receive from chaincode: %w", err)
		}
		select {
		case <-h.done:
			return h.reason()
		default:
		}
		switch msg.GetType() {
		case peer.ChaincodeMessage_KEEPALIVE:
			// The shim echoes the peer's keepalives; nothing to do.
		case peer.ChaincodeMessage_COMPLETED, peer.ChaincodeMessage_ERROR:
			h.complete(msg)
		default:
			if inlineRequest(msg.GetType()) && h.answerInline(msg) {
				continue
			}
			select {
			case h.sem <- struct{}{}:
			case <-h.done:
				return h.reason()
			case <-ctx.Done():
				return ctx.Err()
			}
			workers.Add(1)
			go func() {
				defer workers.Done()
				defer func() { <-h.sem }()
				h.reply(h.handleRequest(msg))
			}()
		}
	}
}

// complete hands a transaction's final message to its Execute.
func (h *handler) complete(msg *peer.ChaincodeMessage) {
	tx := h.tx(msg.GetChannelId(), msg.GetTxid())
	if tx == nil {
		// The execution already timed out or was cancelled. Replying would
		// not help: the shim has nobody waiting for an answer to this.
		h.log.Debug("completion for unknown transaction", "type", msg.GetType(), "channel", msg.GetChannelId(), "txid", msg.GetTxid())
		return
	}
	select {
	case tx.result <- msg:
	default:
		h.log.Warn("duplicate completion ignored", "channel", msg.GetChannelId(), "txid", msg.GetTxid())
	}
}

func (h *handler) reply(msg *peer.ChaincodeMessage) {
	select {
	case h.out <- msg:
	case <-h.done:
	}
}

func errorReply(req *peer.ChaincodeMessage, err error) *peer.ChaincodeMessage {
	return &peer.ChaincodeMessage{
		Type:      peer.ChaincodeMessage_ERROR,
		Payload:   []byte(err.Error()),
		Txid:      req.GetTxid(),
		ChannelId: req.GetChannelId(),
	}
}

// inlineRequest reports whether chat answers requests of type t itself
// rather than on a request goroutine: those that touch one key of the
// transaction's simulator (an in-memory write, or one point read) and never
// wait for another goroutine. They are most of what chaincode sends, and a
// goroutine per request cost a start, a stack grown afresh in proto.Unmarshal
// and a scheduler hand-off each: ~8 % of the CPU of a GetState round trip
// (BenchmarkGetStateRoundTrip). Range queries, multi-key reads and write
// batches (up to thousands of keys), history and INVOKE_CHAINCODE (which
// waits for another execution, possibly on this very stream) keep their
// goroutine, so that one of them never holds up the stream.
func inlineRequest(t peer.ChaincodeMessage_Type) bool {
	switch t {
	case peer.ChaincodeMessage_GET_STATE, peer.ChaincodeMessage_PUT_STATE, peer.ChaincodeMessage_DEL_STATE,
		peer.ChaincodeMessage_GET_STATE_METADATA, peer.ChaincodeMessage_PUT_STATE_METADATA:
		return true
	}
	return false
}

// answerInline answers msg on the calling goroutine and reports true, unless
// its transaction is unknown or its lock is held — by a request of the same
// transaction still running on a goroutine (a chaincode may call the shim
// from several goroutines), or by an INVOKE_CHAINCODE waiting for a callee
// whose messages only this goroutine can receive. Then it reports false and
// the caller hands msg to a request goroutine, which may wait for the lock.
func (h *handler) answerInline(msg *peer.ChaincodeMessage) bool {
	fn, ok := requestHandler(msg.GetType())
	if !ok {
		return false
	}
	tx := h.tx(msg.GetChannelId(), msg.GetTxid())
	if tx == nil || !tx.mu.TryLock() {
		return false
	}
	reply := h.answer(fn, tx, msg)
	tx.mu.Unlock()
	h.reply(reply)
	return true
}

// handleRequest answers one chaincode request with RESPONSE or ERROR.
func (h *handler) handleRequest(msg *peer.ChaincodeMessage) *peer.ChaincodeMessage {
	fn, ok := requestHandler(msg.GetType())
	if !ok {
		return errorReply(msg, fmt.Errorf("unexpected message %s from chaincode", msg.GetType()))
	}
	tx := h.tx(msg.GetChannelId(), msg.GetTxid())
	if tx == nil {
		return errorReply(msg, fmt.Errorf("%s: no transaction %s in flight on channel %q", msg.GetType(), msg.GetTxid(), msg.GetChannelId()))
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return h.answer(fn, tx, msg)
}

// answer runs fn for msg with tx.mu held.
func (h *handler) answer(fn requestFunc, tx *txContext, msg *peer.ChaincodeMessage) *peer.ChaincodeMessage {
	if tx.finished {
		return errorReply(msg, fmt.Errorf("%s: transaction %s has already finished", msg.GetType(), msg.GetTxid()))
	}
	payload, err := fn(h.s, tx, msg.GetPayload())
	if err != nil {
		// Fabric's phrasing, which chaincode error handling may match on.
		return errorReply(msg, fmt.Errorf("%s failed: transaction ID: %s: %w", msg.GetType(), msg.GetTxid(), err))
	}
	return &peer.ChaincodeMessage{
		Type:      peer.ChaincodeMessage_RESPONSE,
		Payload:   payload,
		Txid:      msg.GetTxid(),
		ChannelId: msg.GetChannelId(),
	}
}
