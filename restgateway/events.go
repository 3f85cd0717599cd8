package restgateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// blockSummary is the JSON of one block event: what an application acts on,
// not the raw protobuf.
type blockSummary struct {
	Channel      string      `json:"channel"`
	Number       uint64      `json:"number"`
	Transactions []txSummary `json:"transactions"`
}

type txSummary struct {
	TxID           string         `json:"txId"`
	Type           string         `json:"type"`
	ValidationCode string         `json:"validationCode"`
	Valid          bool           `json:"valid"`
	Events         []eventSummary `json:"chaincodeEvents,omitempty"`
}

// eventSummary names a chaincode event in a block event (the filtered block
// carries no payloads; the chaincode events stream does).
type eventSummary struct {
	Chaincode string `json:"chaincode"`
	EventName string `json:"eventName"`
}

// chaincodeEvent is the JSON of one chaincode event.
type chaincodeEvent struct {
	BlockNumber uint64 `json:"blockNumber"`
	TxID        string `json:"txId"`
	Chaincode   string `json:"chaincode"`
	EventName   string `json:"eventName"`
	Payload     []byte `json:"payload"` // base64 in JSON
}

// sseEvent is one event to write; name "error" ends the stream.
type sseEvent struct {
	id, name string
	data     any
}

// resumePoint is where an event stream starts.
type resumePoint struct {
	set   bool   // false: from the next block committed
	block uint64 // first block to read
	// afterTx skips the chaincode events of block up to and including this
	// transaction (they were delivered before the client reconnected).
	afterTx string
}

// parseResume reads Last-Event-ID (which wins: EventSource repeats the
// original URL, ?start= included, when it reconnects) or ?start=.
func parseResume(r *http.Request, allowTx bool) (resumePoint, *apiError) {
	if id := strings.TrimSpace(r.Header.Get("Last-Event-ID")); id != "" {
		blockPart, tx, hasTx := strings.Cut(id, ":")
		n, err := strconv.ParseUint(blockPart, 10, 64)
		if err != nil || (hasTx && (!allowTx || tx == "")) {
			want := "a block number"
			if allowTx {
				want = "<block number>:<transaction ID> or a block number"
			}
			return resumePoint{}, errBadRequest(fmt.Sprintf("Last-Event-ID %q is not %s", id, want))
		}
		if hasTx {
			return resumePoint{set: true, block: n, afterTx: tx}, nil
		}
		if n == math.MaxUint64 {
			return resumePoint{}, errBadRequest("Last-Event-ID is the largest block number; nothing follows it")
		}
		return resumePoint{set: true, block: n + 1}, nil
	}
	if s := r.URL.Query().Get("start"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return resumePoint{}, errBadRequest(fmt.Sprintf("start %q is not a block number", s))
		}
		return resumePoint{set: true, block: n}, nil
	}
	return resumePoint{}, nil
}

// blockEvents streams filtered blocks of a channel from the peer's
// DeliverFiltered service.
func (g *Gateway) blockEvents(w http.ResponseWriter, r *http.Request, who *signer) error {
	channel := r.PathValue("channel")
	if err := who.access.check(channel, ""); err != nil {
		return err
	}
	from, aerr := parseResume(r, false)
	if aerr != nil {
		return aerr
	}
	sess, err := g.ids.session(r.Context(), who.name)
	if err != nil {
		return err
	}
	var opts []client.BlockEventsOption
	if from.set {
		opts = append(opts, client.WithStartBlock(from.block))
	}
	req, err := sess.gw.GetNetwork(channel).NewFilteredBlockEventsRequest(opts...)
	if err != nil {
		return fmt.Errorf("block events request: %w", err)
	}
	// The client library's own Events drops the peer's refusal (a Deliver
	// status) on the floor; signing the request here and reading the stream
	// directly keeps it for the client.
	raw, err := req.Bytes()
	if err != nil {
		return err
	}
	env := &cb.Envelope{}
	if err := proto.Unmarshal(raw, env); err != nil {
		return fmt.Errorf("block events request: %w", err)
	}
	if env.Signature, err = sess.sign(req.Digest()); err != nil {
		return fmt.Errorf("sign block events request: %w", err)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stream, err := pb.NewDeliverClient(g.conn).DeliverFiltered(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(env); err != nil {
		return err
	}
	return g.stream(ctx, cancel, w, func(emit func(sseEvent) bool) error {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return err
			}
			switch t := resp.Type.(type) {
			case *pb.DeliverResponse_FilteredBlock:
				fb := t.FilteredBlock
				if !emit(sseEvent{id: strconv.FormatUint(fb.GetNumber(), 10), name: "block", data: summarize(fb)}) {
					return nil
				}
			case *pb.DeliverResponse_Status:
				return deliverStatusError(t.Status)
			}
		}
	})
}

func summarize(fb *pb.FilteredBlock) blockSummary {
	s := blockSummary{Channel: fb.GetChannelId(), Number: fb.GetNumber(), Transactions: []txSummary{}}
	for _, ft := range fb.GetFilteredTransactions() {
		ts := txSummary{TxID: ft.GetTxid(), Type: ft.GetType().String(),
			ValidationCode: ft.GetTxValidationCode().String(), Valid: ft.GetTxValidationCode() == pb.TxValidationCode_VALID}
		for _, a := range ft.GetTransactionActions().GetChaincodeActions() {
			if ev := a.GetChaincodeEvent(); ev != nil && ev.GetEventName() != "" {
				ts.Events = append(ts.Events, eventSummary{Chaincode: ev.GetChaincodeId(), EventName: ev.GetEventName()})
			}
		}
		s.Transactions = append(s.Transactions, ts)
	}
	return s
}

// deliverStatusError turns a Deliver status that ends a stream into an
// error event.
func deliverStatusError(st cb.Status) error {
	msg := "peer ended the block stream: " + st.String()
	switch st {
	case cb.Status_SUCCESS:
		return io.EOF
	case cb.Status_FORBIDDEN:
		return errForbidden(msg)
	case cb.Status_NOT_FOUND:
		return errNotFound(msg)
	case cb.Status_BAD_REQUEST:
		return errBadRequest(msg)
	case cb.Status_SERVICE_UNAVAILABLE:
		return newAPIError(http.StatusServiceUnavailable, codePeerUnavailable, msg)
	}
	return newAPIError(http.StatusBadGateway, codePeerError, msg)
}

// chaincodeEvents streams one chaincode's events from the peer's gateway.
func (g *Gateway) chaincodeEvents(w http.ResponseWriter, r *http.Request, who *signer) error {
	channel, chaincode := r.PathValue("channel"), r.PathValue("chaincode")
	if err := who.access.check(channel, chaincode); err != nil {
		return err
	}
	from, aerr := parseResume(r, true)
	if aerr != nil {
		return aerr
	}
	sess, err := g.ids.session(r.Context(), who.name)
	if err != nil {
		return err
	}
	var opts []client.ChaincodeEventsOption
	if from.set {
		opts = append(opts, client.WithStartBlock(from.block))
	}
	req, err := sess.gw.GetNetwork(channel).NewChaincodeEventsRequest(chaincode, opts...)
	if err != nil {
		return fmt.Errorf("chaincode events request: %w", err)
	}
	raw, err := req.Bytes()
	if err != nil {
		return err
	}
	signed := &gp.SignedChaincodeEventsRequest{}
	if err := proto.Unmarshal(raw, signed); err != nil {
		return fmt.Errorf("chaincode events request: %w", err)
	}
	if signed.Signature, err = sess.sign(req.Digest()); err != nil {
		return fmt.Errorf("sign chaincode events request: %w", err)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stream, err := gp.NewGatewayClient(g.conn).ChaincodeEvents(ctx, signed)
	if err != nil {
		return err
	}
	return g.stream(ctx, cancel, w, func(emit func(sseEvent) bool) error {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return err
			}
			events := resp.GetEvents()
			// Skip what the client saw before it reconnected. The skip is done
			// here rather than with the request's AfterTransactionId, whose
			// handling differs between Fabric and Cairn peers; a transaction
			// not in the block skips nothing.
			if from.afterTx != "" && resp.GetBlockNumber() == from.block {
				for i, ev := range events {
					if ev.GetTxId() == from.afterTx {
						events = events[i+1:]
						break
					}
				}
			}
			for _, ev := range events {
				ce := chaincodeEvent{BlockNumber: resp.GetBlockNumber(), TxID: ev.GetTxId(), Chaincode: ev.GetChaincodeId(),
					EventName: ev.GetEventName(), Payload: ev.GetPayload()}
				if ce.Payload == nil {
					ce.Payload = []byte{}
				}
				id := strconv.FormatUint(ce.BlockNumber, 10) + ":" + ce.TxID
				if !emit(sseEvent{id: id, name: "chaincodeEvent", data: ce}) {
					return nil
				}
			}
		}
	})
}

// stream writes Server-Sent Events. recv runs in a goroutine owned here: it
// reads the peer's stream and hands events to emit, which reports false once
// the client is gone; its error (unless the stream was cancelled) becomes a
// final "error" event. stream returns only after recv has returned.
func (g *Gateway) stream(ctx context.Context, cancel context.CancelFunc, w http.ResponseWriter,
	recv func(emit func(sseEvent) bool) error) error {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil // the status is out; nothing more can be reported
	}

	events := make(chan sseEvent)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(events)
		emit := func(ev sseEvent) bool {
			select {
			case events <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		err := recv(emit)
		if err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
			return
		}
		ae := toAPIError(err)
		if ae.cause != nil {
			g.log.Error("event stream failed", "error", ae.cause)
		}
		emit(sseEvent{name: "error", data: map[string]errorBody{"error": ae.body}})
	}()
	defer wg.Wait()
	defer cancel()

	keepalive := time.NewTicker(g.cfg.SSEKeepalive)
	defer keepalive.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if err := writeEvent(w, ev); err != nil {
				return nil // client gone
			}
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}

// writeEvent writes one event; JSON has no raw newlines, so data is one line.
func writeEvent(w io.Writer, ev sseEvent) error {
	data, err := json.Marshal(ev.data)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	var b strings.Builder
	if ev.id != "" {
		b.WriteString("id: " + ev.id + "\n")
	}
	b.WriteString("event: " + ev.name + "\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
	_, err = io.WriteString(w, b.String())
	return err
}
