// Package chaincode is the peer's side of the Fabric chaincode shim
// protocol: it serves peer.ChaincodeSupport.Register for chaincode processes
// that dial the peer, and runs transactions on them for the endorser through
// Execute, answering their state requests from a TxSimulator.
//
// It speaks the protocol of Fabric v2.5's peer to the v2.3.0 Go shim:
// REGISTER → REGISTERED, READY (whose payload advertises write batching and
// multi-key reads), then TRANSACTION/INIT out and GET_STATE, PUT_STATE, range
// queries with pagination, WRITE_BATCH_STATE, GET_STATE_MULTIPLE and the rest
// back in, until COMPLETED or ERROR ends the transaction. INVOKE_CHAINCODE
// runs another chaincode inside the same transaction, resolved through the
// Invocation's Callees. Private data, rich queries and (unless the simulator
// implements HistoryQuerier) key history are answered with clear errors.
//
// # Concurrency
//
// Support is safe for concurrent use. Each registered stream (Register for
// chaincode that dials the peer, Serve for any stream, such as the peer's
// client stream to a chaincode server) has one receiving goroutine, one
// sending goroutine and a bounded number of request goroutines (single-key
// reads and writes are answered by the goroutine that dispatches the
// stream's messages, see inlineRequest);
// Register and Serve return only after the request and sending goroutines
// have stopped, and Close cancels every stream and waits for all goroutines
// the package started. Any number of transactions may run on one stream at
// once, keyed by channel and transaction ID. Requests of one transaction are
// applied to its TxSimulator one at a time, and never after Execute returned,
// so a simulator need not be safe for concurrent use.
package chaincode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TxSimulator is the view of the ledger a chaincode execution reads and writes;
// it records the read-write set.
type TxSimulator interface {
	GetState(namespace, key string) ([]byte, error)
	GetStateMultipleKeys(namespace string, keys []string) ([][]byte, error)
	SetState(namespace, key string, value []byte) error
	DeleteState(namespace, key string) error
	GetStateRangeScanIterator(namespace, startKey, endKey string) (ResultsIterator, error)
	GetStateMetadata(namespace, key string) (map[string][]byte, error)
	SetStateMetadata(namespace, key string, metadata map[string][]byte) error
}

// ResultsIterator yields range-query results in key order; Next returns (nil, nil) at the end.
type ResultsIterator interface {
	Next() (*queryresult.KV, error)
	Close()
}

// HistoryQuerier is optionally implemented by a TxSimulator that can read
// the history of a key (GetHistoryForKey in chaincode).
type HistoryQuerier interface {
	GetHistoryForKey(namespace, key string) (HistoryIterator, error)
}

// HistoryIterator yields a key's modifications; Next returns (nil, nil) at the end.
type HistoryIterator interface {
	Next() (*queryresult.KeyModification, error)
	Close()
}

// Errors callers branch on.
var (
	// ErrNotRegistered: no chaincode with the package ID is connected.
	ErrNotRegistered = errors.New("chaincode is not registered")
	// ErrDisconnected: the chaincode's stream ended while the transaction ran.
	ErrDisconnected = errors.New("chaincode disconnected")
	// ErrTimeout: the chaincode did not finish within Config.ExecuteTimeout.
	ErrTimeout = errors.New("chaincode execution timed out")
	// ErrDuplicateTxID: a transaction with the same channel and ID is in flight.
	ErrDuplicateTxID = errors.New("transaction is already executing")
	// ErrClosed: Support has been closed.
	ErrClosed = errors.New("chaincode support is closed")
	// ErrReadOnly: a chaincode called on another channel tried to write there.
	ErrReadOnly = errors.New("state of another channel is read-only to a chaincode-to-chaincode call")
)

// Config configures Support. Zero values take the defaults shown.
type Config struct {
	// Logger receives protocol diagnostics; nil discards them.
	Logger *slog.Logger
	// ExecuteTimeout bounds one Execute (Fabric's chaincode.executetimeout); default 30s.
	ExecuteTimeout time.Duration
	// QueryBatchSize is how many results one range-query response carries
	// before the chaincode must ask for more (Fabric's maxResultLimit); default 100.
	QueryBatchSize int
	// TotalQueryLimit caps the results one query returns in total
	// (Fabric's ledger.state.totalQueryLimit); default 100000.
	TotalQueryLimit int
	// MaxWriteBatch and MaxGetMultipleKeys are advertised to the chaincode in
	// READY as the largest WRITE_BATCH_STATE and GET_STATE_MULTIPLE it may
	// send (Fabric's chaincode.runtimeParams); default 1000 each. The v2.3.0
	// shim never uses values below 100.
	MaxWriteBatch      uint32
	MaxGetMultipleKeys uint32
	// MaxConcurrentRequests bounds the chaincode requests one stream serves
	// at once; default 128.
	MaxConcurrentRequests int
	// MaxCallDepth bounds nested chaincode-to-chaincode calls: a chaincode
	// called at this depth may not call another; default 8. Fabric has no
	// bound; recursion there ends only at the execute timeout.
	MaxCallDepth int
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ExecuteTimeout <= 0 {
		c.ExecuteTimeout = 30 * time.Second
	}
	if c.QueryBatchSize <= 0 {
		c.QueryBatchSize = 100
	}
	if c.TotalQueryLimit <= 0 {
		c.TotalQueryLimit = 100000
	}
	if c.MaxWriteBatch == 0 {
		c.MaxWriteBatch = 1000
	}
	if c.MaxGetMultipleKeys == 0 {
		c.MaxGetMultipleKeys = 1000
	}
	if c.MaxConcurrentRequests <= 0 {
		c.MaxConcurrentRequests = 128
	}
	if c.MaxCallDepth <= 0 {
		c.MaxCallDepth = 8
	}
	return c
}

// Invocation is one chaincode execution.
type Invocation struct {
	// PackageID selects the registered chaincode process.
	PackageID string
	// Namespace is the chaincode name; state is read and written under it.
	Namespace string
	ChannelID string
	TxID      string
	// SignedProposal is passed to the chaincode so GetCreator, GetTransient,
	// GetBinding, GetTxTimestamp and GetSignedProposal work there.
	SignedProposal *peer.SignedProposal
	Input          *peer.ChaincodeInput
	// Init sends INIT instead of TRANSACTION.
	Init bool
	// Callees resolves the chaincodes this one invokes (InvokeChaincode);
	// nil refuses such calls. Nested calls use the same Callees.
	Callees Callees
}

// Callees is what a transaction's chaincode-to-chaincode calls need from the
// peer. The endorser implements it once per proposal, so it can check the
// proposal's rights and record which chaincodes were called.
type Callees interface {
	// Resolve returns the package serving chaincode name on channelID, or
	// an error refusing the call (chaincode not defined there, system
	// chaincode, access denied, unknown channel).
	Resolve(ctx context.Context, channelID, name string) (packageID string, err error)
	// ChannelState returns a simulator over the committed state of a
	// channel other than the transaction's, for a callee there; release
	// is called when the callee finished. What it records is discarded:
	// Support refuses writes through it and nothing of it is committed.
	ChannelState(ctx context.Context, channelID, txID string) (sim TxSimulator, release func(), err error)
}

// Result is what the chaincode returned. A chaincode error is a Result with
// Response.Status 500 (shim.ERROR) and its message, not a Go error.
type Result struct {
	Response *peer.Response
	// Event is the transaction's chaincode event, nil if none was set.
	Event *peer.ChaincodeEvent
}

// Support runs the chaincode side of the peer. Create it with New.
type Support struct {
	peer.UnimplementedChaincodeSupportServer

	cfg Config
	log *slog.Logger

	// ctx is the root of every stream's context; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	handlers   map[string]*handler
	registered chan struct{} // closed and replaced on every registration
}

// New returns a Support ready to serve Register and Execute.
func New(cfg Config) *Support {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Support{
		cfg:        cfg,
		log:        cfg.Logger,
		ctx:        ctx,
		cancel:     cancel,
		handlers:   map[string]*handler{},
		registered: make(chan struct{}),
	}
}

// Close disconnects every chaincode, fails in-flight executions and waits
// for all goroutines the package started. Register and Execute fail after it.
func (s *Support) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// goTracked starts fn on a goroutine Close waits for, unless closed.
func (s *Support) goTracked(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// WaitRegistered blocks until a chaincode with packageID is registered.
func (s *Support) WaitRegistered(ctx context.Context, packageID string) error {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if _, ok := s.handlers[packageID]; ok {
			s.mu.Unlock()
			return nil
		}
		changed := s.registered
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for chaincode %s to register: %w", packageID, ctx.Err())
		case <-s.ctx.Done():
			return ErrClosed
		}
	}
}

func (s *Support) register(h *handler) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if _, ok := s.handlers[h.packageID]; ok {
		return fmt.Errorf("duplicate chaincode registration for %s", h.packageID)
	}
	// REGISTERED and READY are queued before the handler becomes visible,
	// so no TRANSACTION can overtake them: the shim dies on any message
	// that arrives before READY.
	for _, msg := range h.greeting {
		h.out <- msg
	}
	s.handlers[h.packageID] = h
	close(s.registered)
	s.registered = make(chan struct{})
	return nil
}

func (s *Support) deregister(h *handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handlers[h.packageID] == h {
		delete(s.handlers, h.packageID)
	}
}

func (s *Support) handler(packageID string) *handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handlers[packageID]
}

// Stream is one bidirectional chaincode protocol stream, seen from the peer.
// Both a peer.ChaincodeSupport_RegisterServer (the chaincode dialled the
// peer) and a peer.Chaincode_ConnectClient (the peer dialled a chaincode
// server, chaincode-as-a-service) satisfy it; in both modes the chaincode
// speaks first with REGISTER.
type Stream interface {
	Send(*peer.ChaincodeMessage) error
	Recv() (*peer.ChaincodeMessage, error)
	Context() context.Context
}

// Register serves one chaincode process's stream (peer.ChaincodeSupportServer).
func (s *Support) Register(stream peer.ChaincodeSupport_RegisterServer) error {
	return grpcError(s.Serve(stream))
}

// Serve speaks the chaincode protocol on stream from REGISTER until the
// stream ends, its context is cancelled or Support is closed. It returns nil
// when the chaincode disconnected on its own.
//
// A blocked Recv can only be ended by ending the RPC, so the goroutine that
// receives may outlive Serve until it does: a server stream ends when its
// handler returns, but the owner of a client stream (Chaincode_ConnectClient)
// must cancel the context it created the stream with once Serve returns, and
// before or while calling Close, which waits for that goroutine.
func (s *Support) Serve(stream Stream) error {
	done := make(chan error, 1)
	if !s.goTracked(func() { done <- s.serve(stream) }) {
		return ErrClosed
	}
	return <-done
}

// grpcError is the one place this service's errors become gRPC statuses.
func grpcError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, errBadRegister):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errDuplicateRegister):
		return status.Error(codes.AlreadyExists, err.Error())
	default:
		return status.Error(codes.Unknown, err.Error())
	}
}

var (
	errBadRegister       = errors.New("invalid chaincode registration")
	errDuplicateRegister = errors.New("chaincode already registered")
)

// Execute runs one transaction on the chaincode registered as inv.PackageID,
// serving its state requests from sim, and returns the chaincode's response.
// Config.ExecuteTimeout bounds the whole execution, including the
// chaincodes it calls.
func (s *Support) Execute(ctx context.Context, inv Invocation, sim TxSimulator) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ExecuteTimeout)
	defer cancel()
	reply, err := s.run(ctx, inv, sim, 0)
	if err != nil {
		return nil, err
	}
	return completion(inv, reply)
}

// run executes inv at call depth depth (0 for a proposal's chaincode) and
// returns the chaincode's COMPLETED or ERROR message. ctx carries the
// deadline of the whole top-level execution.
func (s *Support) run(ctx context.Context, inv Invocation, sim TxSimulator, depth int) (*peer.ChaincodeMessage, error) {
	if inv.TxID == "" || inv.Namespace == "" || sim == nil {
		return nil, errors.New("execute chaincode: invocation needs a TxID, a Namespace and a simulator")
	}
	h := s.handler(inv.PackageID)
	if h == nil {
		return nil, fmt.Errorf("execute %s: %w: %s", inv.Namespace, ErrNotRegistered, inv.PackageID)
	}
	tx, err := h.addTx(ctx, inv, sim, depth)
	if err != nil {
		return nil, err
	}
	defer h.removeTx(tx)

	input := inv.Input
	if input == nil {
		input = &peer.ChaincodeInput{}
	}
	payload, err := proto.Marshal(input)
	if err != nil {
		return nil, fmt.Errorf("execute %s: marshal input: %w", inv.Namespace, err)
	}
	msgType := peer.ChaincodeMessage_TRANSACTION
	if inv.Init {
		msgType = peer.ChaincodeMessage_INIT
	}
	msg := &peer.ChaincodeMessage{
		Type:      msgType,
		Payload:   payload,
		Txid:      inv.TxID,
		ChannelId: inv.ChannelID,
		Proposal:  inv.SignedProposal,
	}

	if err := h.send(ctx, msg); err != nil {
		return nil, s.executeErr(inv, h, ctx, err)
	}
	select {
	case reply := <-tx.result:
		return reply, nil
	case <-h.done:
		select {
		case reply := <-tx.result: // completed just before the stream ended
			return reply, nil
		default:
		}
		return nil, s.executeErr(inv, h, ctx, nil)
	case <-ctx.Done():
		return nil, s.executeErr(inv, h, ctx, nil)
	}
}

func (s *Support) executeErr(inv Invocation, h *handler, ctx context.Context, err error) error {
	prefix := fmt.Sprintf("execute %s tx %s on channel %q", inv.Namespace, inv.TxID, inv.ChannelID)
	select {
	case <-h.done:
		return fmt.Errorf("%s: %w: %v", prefix, ErrDisconnected, h.reason())
	default:
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return fmt.Errorf("%s: %w: %w", prefix, ErrTimeout, ctxErr)
		}
		return fmt.Errorf("%s: %w", prefix, ctxErr)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// completion turns the chaincode's COMPLETED or ERROR into a Result.
func completion(inv Invocation, msg *peer.ChaincodeMessage) (*Result, error) {
	switch msg.GetType() {
	case peer.ChaincodeMessage_COMPLETED:
		resp := &peer.Response{}
		if err := proto.Unmarshal(msg.GetPayload(), resp); err != nil {
			return nil, fmt.Errorf("execute %s tx %s: chaincode sent a malformed response: %w", inv.Namespace, inv.TxID, err)
		}
		res := &Result{Response: resp}
		if ev := msg.GetChaincodeEvent(); ev != nil {
			// As Fabric does: the chaincode only names the event; the peer
			// stamps which chaincode and transaction it belongs to.
			res.Event = &peer.ChaincodeEvent{
				ChaincodeId: inv.Namespace,
				TxId:        inv.TxID,
				EventName:   ev.GetEventName(),
				Payload:     ev.GetPayload(),
			}
		}
		return res, nil
	default: // ERROR: the shim failed the transaction before or instead of returning a Response.
		return &Result{Response: &peer.Response{Status: 500, Message: string(msg.GetPayload())}}, nil
	}
}

// Both connection modes' streams can be served.
var (
	_ Stream = peer.ChaincodeSupport_RegisterServer(nil)
	_ Stream = peer.Chaincode_ConnectClient(nil)
)
