package chain

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/orderer/internal/blocksign"
	"github.com/cairn-ledger/cairn/orderer/internal/cutter"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/orderer/etcdraft"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ErrEvicted: a committed config block removed this node from the channel's
// consenters; Run returns it once the node has left the raft group (or gave
// up waiting to hear that it did). The owner may keep the channel as a
// follower.
var ErrEvicted = errors.New("this node was removed from the channel's consenters")

// errAbdicating: the leader is handing leadership over before ordering a
// config update that removes it; the submitter waits for the new leader.
var errAbdicating = errors.New("leader is transferring leadership")

// ConfigSupport is the channel configuration the chain orders against; the
// registrar's channel implements it. Its methods are called from Run's
// goroutine and must not block for long.
type ConfigSupport interface {
	// Bundle is the configuration in force.
	Bundle() *channelconfig.Bundle
	// ProcessConfig re-validates a CONFIG envelope that was validated against
	// an older configuration, as Fabric's ProcessConfigMsg: it proposes the
	// envelope's LastUpdate again against the configuration in force and
	// returns the new CONFIG envelope, signed by this node.
	ProcessConfig(env []byte) ([]byte, error)
	// ProcessNormal re-validates a normal envelope that was validated
	// against an older configuration (size and /Channel/Writers), as
	// Fabric's ProcessNormalMsg.
	ProcessNormal(env []byte) error
	// ConfigCommitted puts the configuration of a committed config block in
	// force (policies for broadcast and deliver, endpoints for replication).
	ConfigCommitted(b *channelconfig.Bundle)
}

// MemberSetter is optionally implemented by a Transport whose member set can
// change: the chain calls it when a config block adds, removes or rotates a
// consenter, with the consenters it must reach, by raft ID.
type MemberSetter interface {
	SetMembers(members map[uint64]channelconfig.Consenter)
}

// Membership is the consenter set a config introduces, as Fabric's etcdraft
// ComputeMembershipChanges derives it: the raft IDs of the new consenters in
// config order (an unchanged consenter keeps its ID, a rotated one takes the
// ID of the one it replaces, a new one gets NextConsenterID, which then
// grows), and the raft configuration change it implies, if any.
type Membership struct {
	IDs    []uint64
	Next   uint64
	Change *pb.ConfChange // nil: no raft change (none, or a rotation)
	// Rotated is the raft ID of a consenter whose endpoint or certificates
	// change (it must reconnect); 0 if none.
	Rotated uint64
}

// UnacceptableQuorumLoss reports whether applying m while only the consenters
// in active (by raft ID, this node included) are reachable would leave the
// new consenter set without a quorum that could have been kept — Fabric's
// rule (MembershipChanges.UnacceptableQuorumLoss): an added node does not
// count until it has caught up, a rotated one is away while it reconnects,
// and a removed one is gone. Growing a one- or two-node set cannot keep a
// quorum anyway, so it is allowed.
func (m Membership) UnacceptableQuorumLoss(active map[uint64]bool) bool {
	quorum := len(m.IDs)/2 + 1
	faultTolerant := len(m.IDs) > 2
	count := func(except uint64) int {
		n := 0
		for id, ok := range active {
			if ok && id != except && slices.Contains(m.IDs, id) {
				n++
			}
		}
		return n
	}
	switch {
	case m.Change != nil && m.Change.GetType() == pb.ConfChangeType_ConfChangeAddNode:
		return faultTolerant && count(0) < quorum
	case m.Rotated != 0:
		return faultTolerant && count(m.Rotated) < quorum
	case m.Change != nil && m.Change.GetType() == pb.ConfChangeType_ConfChangeRemoveNode:
		return count(m.Change.GetNodeId()) < quorum
	}
	return false
}

// ComputeMembership maps the consenters of a new configuration onto raft IDs,
// given the current ones (ids[i] is the ID of old[i]) and the next free ID.
// At most one consenter may be added and one removed.
func ComputeMembership(ids []uint64, old, next []channelconfig.Consenter, nextID uint64) (Membership, error) {
	if len(ids) != len(old) {
		return Membership{}, fmt.Errorf("membership: %d raft IDs for %d consenters", len(ids), len(old))
	}
	m := Membership{IDs: make([]uint64, len(next)), Next: nextID}
	used := map[int]bool{}
	added := -1
	for i, c := range next {
		j := slices.IndexFunc(old, func(o channelconfig.Consenter) bool { return sameConsenter(o, c) })
		if j < 0 || used[j] {
			if added >= 0 {
				return Membership{}, errors.New("membership: more than one consenter added")
			}
			added = i
			continue
		}
		used[j] = true
		m.IDs[i] = ids[j]
	}
	removed := -1
	for j := range old {
		if !used[j] {
			if removed >= 0 {
				return Membership{}, errors.New("membership: more than one consenter removed")
			}
			removed = j
		}
	}
	switch {
	case added >= 0 && removed >= 0: // rotation: same node, new endpoint or certificates
		m.IDs[added] = ids[removed]
		m.Rotated = ids[removed]
	case added >= 0:
		m.IDs[added] = nextID
		m.Next = nextID + 1
		m.Change = &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: proto.Uint64(nextID)}
	case removed >= 0:
		m.Change = &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(ids[removed])}
	}
	return m, nil
}

func sameConsenter(a, b channelconfig.Consenter) bool {
	return a.Host == b.Host && a.Port == b.Port &&
		bytes.Equal(bytes.TrimSpace(a.ClientTLSCert), bytes.TrimSpace(b.ClientTLSCert)) &&
		bytes.Equal(bytes.TrimSpace(a.ServerTLSCert), bytes.TrimSpace(b.ServerTLSCert))
}

// headerType reads the channel header type of a marshalled envelope by
// walking the wire format (envelope.payload.header.channel_header.type),
// without copying. ok is false when the bytes do not hold one.
func headerType(env []byte) (typ int32, ok bool) {
	field := func(b []byte, want protowire.Number) ([]byte, bool) {
		var out []byte
		found := false
		for len(b) > 0 {
			num, wt, n := protowire.ConsumeTag(b)
			if n < 0 {
				return nil, false
			}
			b = b[n:]
			if num == want && wt == protowire.BytesType {
				v, m := protowire.ConsumeBytes(b)
				if m < 0 {
					return nil, false
				}
				out, found = v, true // the last occurrence wins
				b = b[m:]
				continue
			}
			m := protowire.ConsumeFieldValue(num, wt, b)
			if m < 0 {
				return nil, false
			}
			b = b[m:]
		}
		return out, found
	}
	payload, ok := field(env, 1)
	if !ok {
		return 0, false
	}
	header, ok := field(payload, 1)
	if !ok {
		return 0, false
	}
	chdr, ok := field(header, 1)
	if !ok {
		return 0, false
	}
	found := false
	for b := chdr; len(b) > 0; {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
		if num == 1 && wt == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, false
			}
			typ, found = int32(v), true
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, wt, b)
		if m < 0 {
			return 0, false
		}
		b = b[m:]
	}
	return typ, found
}

// IsConfigEnvelope reports whether a marshalled envelope is a CONFIG
// transaction.
func IsConfigEnvelope(env []byte) bool {
	typ, ok := headerType(env)
	return ok && typ == int32(cb.HeaderType_CONFIG)
}

// configOfEnvelope parses the configuration a CONFIG envelope installs.
func configOfEnvelope(channelID string, raw []byte) (*channelconfig.Bundle, error) {
	env := &cb.Envelope{}
	if err := proto.Unmarshal(raw, env); err != nil {
		return nil, fmt.Errorf("config envelope: %w", err)
	}
	p := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, p); err != nil {
		return nil, fmt.Errorf("config envelope payload: %w", err)
	}
	ce := &cb.ConfigEnvelope{}
	if err := proto.Unmarshal(p.Data, ce); err != nil {
		return nil, fmt.Errorf("config envelope: %w", err)
	}
	return channelconfig.New(channelID, ce.GetConfig())
}

// orderConfig is the leader's part of a config update (Fabric's etcdraft
// ordered() for a config message): re-validate it if the configuration moved
// since it was validated, hand leadership over first if it removes this
// node, otherwise cut the pending batch and propose the config envelope
// alone in a block that carries the new consenter IDs. No envelope is taken
// until that block is applied (and its raft change, if any).
func (c *Chain) orderConfig(env []byte, seq uint64) error {
	if !c.isLeader {
		return errNotLeader
	}
	sup := c.cfg.Support
	if sup == nil {
		return errors.New("this chain does not take config updates")
	}
	current := sup.Bundle()
	if seq != current.Sequence() {
		c.log.Info("config message validated against another config sequence; re-validating", "validated_at", int64(seq), "current", current.Sequence())
		fresh, err := sup.ProcessConfig(env)
		if err != nil {
			return fmt.Errorf("config message no longer valid at config sequence %d: %w", current.Sequence(), err)
		}
		env = fresh
	}
	next, err := configOfEnvelope(c.cfg.ChannelID, env)
	if err != nil {
		return fmt.Errorf("config message: %w", err)
	}
	if next.Sequence() != current.Sequence()+1 {
		return fmt.Errorf("config message carries config sequence %d, want %d", next.Sequence(), current.Sequence()+1)
	}
	mem, err := ComputeMembership(c.cfg.Consenters, c.consenterList(), next.Orderer().Consenters, c.cfg.NextConsenterID)
	if err != nil {
		return fmt.Errorf("config message: %w", err)
	}
	if active := c.activeConsenters(); mem.UnacceptableQuorumLoss(active) {
		n := 0
		for _, ok := range active {
			if ok {
				n++
			}
		}
		return fmt.Errorf("%d out of %d nodes are alive, configuration will result in quorum loss", n, len(c.cfg.Consenters))
	}
	if mem.Change != nil && mem.Change.GetType() == pb.ConfChangeType_ConfChangeRemoveNode && mem.Change.GetNodeId() == c.cfg.SelfID {
		return c.abdicate()
	}
	// Fabric cuts the pending batch first, then the config envelope alone.
	if b := c.cut.Cut(); len(b.Envelopes) > 0 {
		c.propose(b)
	}
	c.stopTimer()
	if !c.proposeBlock([][]byte{env}, mem.IDs, mem.Next, true, "config") {
		return errors.New("config block not proposed")
	}
	c.configInflight = true
	c.log.Info("config block proposed", "block", c.lastCreated.Number, "config_sequence", next.Sequence(), "consenters", mem.IDs)
	return nil
}

// activeConsenters are the voters the leader heard from recently (raft's
// RecentActive, which CheckQuorum resets every election timeout), itself
// included.
func (c *Chain) activeConsenters() map[uint64]bool {
	active := map[uint64]bool{c.cfg.SelfID: true}
	for id, pr := range c.rn.Status().Progress {
		if pr.RecentActive {
			active[id] = true
		}
	}
	return active
}

// abdicate hands leadership to the most up-to-date other voter before an
// update that removes this node, as Fabric's leader does
// (checkForEvictionNCertRotation, abdicateLeadership): the pending batch is
// proposed first and no envelope is taken meanwhile.
func (c *Chain) abdicate() error {
	if !c.abdicating {
		var target, best uint64
		for id, pr := range c.rn.Status().Progress {
			if id != c.cfg.SelfID && pr.Match >= best {
				target, best = id, pr.Match
			}
		}
		if target == 0 {
			return errors.New("config update removes the only consenter")
		}
		if b := c.cut.Cut(); len(b.Envelopes) > 0 {
			c.propose(b)
		}
		c.stopTimer()
		c.abdicating, c.abdicatedAt = true, c.ticks
		c.log.Info("config update removes this leader; transferring leadership first", "to", target)
		c.rn.TransferLeader(target)
	}
	return errAbdicating
}

// consenterList is the current consenters in the order of c.cfg.Consenters.
func (c *Chain) consenterList() []channelconfig.Consenter {
	out := make([]channelconfig.Consenter, len(c.cfg.Consenters))
	for i, id := range c.cfg.Consenters {
		out[i] = c.members[id]
	}
	return out
}

// configApplied puts a committed config block in force on every consenter:
// the new configuration, batch parameters, and the consenter set the block's
// raft metadata names (the leader computed it with ComputeMembership). A
// consenter addition or removal becomes a raft configuration change, which
// the leader proposes; a node the block removes leaves once that change is
// applied.
func (c *Chain) configApplied(b *cb.Block) {
	bundle, err := channelconfig.FromBlock(b)
	if err != nil {
		// Committed: every node has it. It was validated before ordering.
		c.log.Error("committed config block does not parse; configuration unchanged", "block", b.Header.Number, "err", err)
		return
	}
	if c.cfg.Support != nil {
		c.cfg.Support.ConfigCommitted(bundle)
	}
	oc := bundle.Orderer()
	batch := cutter.Config{MaxMessageCount: oc.MaxMessageCount, PreferredMaxBytes: oc.PreferredMaxBytes}
	if batch.Validate() == nil && oc.BatchTimeout > 0 {
		c.cut.SetConfig(batch)
		c.cfg.Batch, c.cfg.BatchTimeout = batch, oc.BatchTimeout
	}
	if oc.Raft.SnapshotIntervalSize > 0 {
		c.cfg.SnapshotIntervalSize = oc.Raft.SnapshotIntervalSize
	}
	md, err := raftMetadata(b)
	if err != nil || len(md.GetConsenterIds()) != len(oc.Consenters) {
		c.log.Error("committed config block carries no usable raft metadata; membership unchanged", "block", b.Header.Number, "err", err)
		c.configInflight = false
		return
	}
	ids := md.GetConsenterIds()
	var added, removed []uint64
	for _, id := range ids {
		if !slices.Contains(c.cfg.Consenters, id) {
			added = append(added, id)
		}
	}
	for _, id := range c.cfg.Consenters {
		if !slices.Contains(ids, id) {
			removed = append(removed, id)
		}
	}
	members := map[uint64]channelconfig.Consenter{}
	for i, id := range ids {
		members[id] = oc.Consenters[i]
	}
	// A removed node stays reachable until raft has removed it, so it hears
	// of its removal.
	for _, id := range removed {
		members[id] = c.members[id]
	}
	c.cfg.Consenters, c.cfg.NextConsenterID = slices.Clone(ids), md.GetNextConsenterId()
	c.setMembers(members)
	c.confChange = nil
	switch {
	case len(added) == 1 && len(removed) == 0:
		c.confChange = &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: proto.Uint64(added[0])}
	case len(removed) == 1 && len(added) == 0:
		c.confChange = &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(removed[0])}
	case len(added)+len(removed) > 0:
		c.log.Error("committed config block changes raft membership by more than one node; ignored", "added", added, "removed", removed)
	}
	c.configInflight = c.confChange != nil
	c.log.Info("config block applied", "block", b.Header.Number, "config_sequence", bundle.Sequence(), "consenters", ids, "conf_change", c.confChange.String())
	if c.confChange != nil {
		c.confChangeAt = c.ticks
		c.proposeCC = c.isLeader
		if c.confChange.GetType() == pb.ConfChangeType_ConfChangeRemoveNode && c.confChange.GetNodeId() == c.cfg.SelfID {
			c.evictedAt = c.ticks
			c.evicting = true
			c.log.Info("this node is removed from the channel's consenters; leaving once raft has removed it")
		}
	}
}

// confChangeApplied follows a raft configuration change: it ends a config in
// flight, drops a removed node from the transport, and tells Run to stop when
// this node was removed.
func (c *Chain) confChangeApplied(cc *pb.ConfChange) error {
	c.log.Info("raft configuration change applied", "change", cc.GetType().String(), "node", cc.GetNodeId(), "voters", c.confState.GetVoters())
	if p := c.confChange; p != nil && p.GetType() == cc.GetType() && p.GetNodeId() == cc.GetNodeId() {
		c.confChange = nil
		c.configInflight = false
		c.proposeCC = false
	}
	if cc.GetType() != pb.ConfChangeType_ConfChangeRemoveNode {
		return nil
	}
	id := cc.GetNodeId()
	if id == c.cfg.SelfID {
		return ErrEvicted
	}
	if _, ok := c.members[id]; ok && !slices.Contains(c.cfg.Consenters, id) {
		members := cloneMembers(c.members)
		delete(members, id)
		c.setMembers(members)
	}
	return nil
}

func cloneMembers(m map[uint64]channelconfig.Consenter) map[uint64]channelconfig.Consenter {
	out := make(map[uint64]channelconfig.Consenter, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// setMembers records the consenters the transport must reach and hands them
// to a transport that can change its members.
func (c *Chain) setMembers(members map[uint64]channelconfig.Consenter) {
	c.members = members
	if ms, ok := c.cfg.Transport.(MemberSetter); ok {
		ms.SetMembers(cloneMembers(members))
	}
}

// pendingConfChange is the raft change a leader must still propose: the
// committed consenter set (block metadata) and raft's voters differ by one
// node after a leader change or a restart between a config block and its
// raft change (Fabric's getInFlightConfChange).
func (c *Chain) pendingConfChange() *pb.ConfChange {
	voters := c.confState.GetVoters()
	for _, id := range c.cfg.Consenters {
		if !slices.Contains(voters, id) {
			return &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: proto.Uint64(id)}
		}
	}
	for _, id := range voters {
		if !slices.Contains(c.cfg.Consenters, id) {
			return &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(id)}
		}
	}
	return nil
}

// maybeProposeConfChange proposes the raft change of an applied config block
// on the leader, after Advance (raft refuses a change while it has not
// applied the previous one), and again every election timeout until it is
// applied, since raft may have dropped it.
func (c *Chain) maybeProposeConfChange() {
	if !c.isLeader || c.confChange == nil {
		return
	}
	due := c.proposeCC || c.ticks-c.confChangeAt >= uint64(c.cfg.ElectionTick)
	if !due {
		return
	}
	c.proposeCC = false
	c.confChangeAt = c.ticks
	if err := c.rn.ProposeConfChange(c.confChange); err != nil {
		c.log.Warn("raft configuration change not proposed; will retry", "change", c.confChange.String(), "err", err)
		return
	}
	// raft appended one entry (the change, or an empty entry in its place
	// if one is pending): the next block's RaftIndex counts it.
	c.proposed++
	c.log.Info("raft configuration change proposed", "change", c.confChange.GetType().String(), "node", c.confChange.GetNodeId())
}

// raftMetadata reads the etcdraft.BlockMetadata a block carries.
func raftMetadata(b *cb.Block) (*etcdraft.BlockMetadata, error) {
	obm, _, err := blocksign.OrdererMetadata(b)
	if err != nil {
		return nil, err
	}
	if obm == nil || len(obm.ConsenterMetadata) == 0 {
		return nil, fmt.Errorf("block %d has no raft metadata", b.GetHeader().GetNumber())
	}
	md := &etcdraft.BlockMetadata{}
	if err := proto.Unmarshal(obm.ConsenterMetadata, md); err != nil {
		return nil, fmt.Errorf("block %d raft metadata: %w", b.GetHeader().GetNumber(), err)
	}
	return md, nil
}

// evictionDue reports whether a node a committed config block removed should
// stop without having seen raft remove it: after the leader applied the
// removal it no longer sends to this node, which may never hear of it (Fabric
// detects this with its eviction suspector).
func (c *Chain) evictionDue() bool {
	if !c.evicting {
		return false
	}
	if c.ticks-c.evictedAt < uint64(4*c.cfg.ElectionTick) {
		return false
	}
	st := c.rn.BasicStatus()
	return st.RaftState != raft.StateLeader
}
