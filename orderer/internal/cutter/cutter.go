// Package cutter owns block cutting: it groups ordered envelopes into batches by
// the channel's BatchSize (MaxMessageCount, PreferredMaxBytes). It is a pure state
// machine with no timers and no I/O; the raft chain owns the batch timer and calls
// Cut when it fires. A Cutter is not safe for concurrent use: its one owner is the
// chain's loop goroutine.
package cutter

import "fmt"

// Config is the BatchSize part of a channel configuration that cutting depends on.
type Config struct {
	// MaxMessageCount is the most envelopes a block holds.
	MaxMessageCount uint32
	// PreferredMaxBytes is the size a batch should not grow past; an envelope
	// larger than it is cut alone into its own block.
	PreferredMaxBytes uint32
}

// Validate reports a configuration that could never cut sensible blocks.
func (c Config) Validate() error {
	if c.MaxMessageCount == 0 {
		return fmt.Errorf("batch size: MaxMessageCount must be greater than 0")
	}
	if c.PreferredMaxBytes == 0 {
		return fmt.Errorf("batch size: PreferredMaxBytes must be greater than 0")
	}
	return nil
}

// Reason says why a batch was cut; it labels the blocks-cut metric.
type Reason string

// Reasons a batch is cut.
const (
	ReasonCount     Reason = "max_message_count"
	ReasonBytes     Reason = "preferred_max_bytes"
	ReasonOversized Reason = "oversized_envelope"
	ReasonTimeout   Reason = "batch_timeout"
)

// Batch is a cut group of envelopes bound for one block.
type Batch struct {
	Envelopes [][]byte
	Reason    Reason
}

// Cutter accumulates envelopes into the pending batch.
type Cutter struct {
	cfg          Config
	pending      [][]byte
	pendingBytes uint32
}

// New returns an empty cutter.
func New(cfg Config) *Cutter { return &Cutter{cfg: cfg} }

// Ordered adds one envelope of the given size (Fabric counts len(payload) +
// len(signature)) and returns the batches it completes, at most two, and whether
// envelopes remain pending afterwards (the owner then runs the batch timer).
// The rules are Fabric's blockcutter receiver:
//   - an envelope larger than PreferredMaxBytes first flushes the pending batch,
//     then goes alone into a batch of its own;
//   - an envelope that would push the pending batch past PreferredMaxBytes first
//     flushes the pending batch;
//   - a batch reaching MaxMessageCount is cut at once.
func (c *Cutter) Ordered(env []byte, size uint32) (batches []Batch, pending bool) {
	if size > c.cfg.PreferredMaxBytes {
		if len(c.pending) > 0 {
			batches = append(batches, c.cut(ReasonOversized))
		}
		batches = append(batches, Batch{Envelopes: [][]byte{env}, Reason: ReasonOversized})
		return batches, false
	}
	if len(c.pending) > 0 && uint64(c.pendingBytes)+uint64(size) > uint64(c.cfg.PreferredMaxBytes) {
		batches = append(batches, c.cut(ReasonBytes))
	}
	c.pending = append(c.pending, env)
	c.pendingBytes += size
	if uint32(len(c.pending)) >= c.cfg.MaxMessageCount {
		batches = append(batches, c.cut(ReasonCount))
	}
	return batches, len(c.pending) > 0
}

// Cut returns the pending envelopes as a batch (empty when nothing is pending),
// as the batch timer does when it fires.
func (c *Cutter) Cut() Batch {
	return c.cut(ReasonTimeout)
}

// Pending reports how many envelopes wait in the current batch.
func (c *Cutter) Pending() int { return len(c.pending) }

// SetConfig changes the batch size for envelopes that arrive from now on.
func (c *Cutter) SetConfig(cfg Config) { c.cfg = cfg }

// Reset drops the pending batch, as a leader does when it loses leadership: the
// envelopes were acknowledged as handed to the consenter, not as committed.
func (c *Cutter) Reset() {
	c.pending = nil
	c.pendingBytes = 0
}

func (c *Cutter) cut(r Reason) Batch {
	b := Batch{Envelopes: c.pending, Reason: r}
	c.pending = nil
	c.pendingBytes = 0
	return b
}
