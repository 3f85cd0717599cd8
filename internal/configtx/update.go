package configtx

import (
	"errors"
	"fmt"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// ProposeUpdate authorises a CONFIG_UPDATE envelope against the current
// configuration and returns the configuration envelope it produces: the whole
// next configuration (sequence + 1) with LastUpdate set to env, ready to be
// wrapped in a CONFIG transaction. The next configuration must also parse and
// pass ValidateNew.
//
// ProposeUpdate checks the update's own signatures (ConfigUpdateEnvelope
// signatures, each over SignatureHeader ‖ ConfigUpdate) against the
// mod_policies; it does not check the envelope's outer signature, which the
// ordering service checks against /Channel/Writers as for any transaction.
//
// Errors match ErrMalformed, ErrWrongChannel, ErrVersionMismatch,
// ErrInvalidUpdate, policy.ErrNotSatisfied or ErrInvalidConfig, and name the
// element, the policy and why it refused.
func ProposeUpdate(current *channelconfig.Bundle, env *cb.Envelope) (*cb.ConfigEnvelope, error) {
	ce, _, err := propose(current, env)
	return ce, err
}

// Validate re-checks a CONFIG envelope (from a config block) against the
// current configuration, as a peer does before applying it: its sequence must
// follow the current one, its LastUpdate must be authorised and must produce
// exactly its Config. It returns the new configuration's Bundle.
func Validate(current *channelconfig.Bundle, ce *cb.ConfigEnvelope) (*channelconfig.Bundle, error) {
	if current == nil {
		return nil, errors.New("validate config envelope: no current configuration")
	}
	if ce == nil || ce.Config == nil {
		return nil, fmt.Errorf("validate config envelope: %w: no config", ErrMalformed)
	}
	if got, want := ce.Config.Sequence, current.Sequence()+1; got != want {
		return nil, fmt.Errorf("validate config envelope of channel %s: config sequence %d, want %d: %w",
			current.ChannelID(), got, want, ErrVersionMismatch)
	}
	if ce.LastUpdate == nil {
		return nil, fmt.Errorf("validate config envelope of channel %s: %w: no last update", current.ChannelID(), ErrMalformed)
	}
	proposed, next, err := propose(current, ce.LastUpdate)
	if err != nil {
		return nil, fmt.Errorf("validate config envelope: %w", err)
	}
	if !proto.Equal(proposed.Config.ChannelGroup, ce.Config.ChannelGroup) {
		return nil, fmt.Errorf("validate config envelope of channel %s: %w: the last update does not produce the config it carries",
			current.ChannelID(), ErrInvalidConfig)
	}
	return next, nil
}

func propose(current *channelconfig.Bundle, env *cb.Envelope) (*cb.ConfigEnvelope, *channelconfig.Bundle, error) {
	if current == nil {
		return nil, nil, errors.New("propose config update: no current configuration")
	}
	channelID := current.ChannelID()
	fail := func(err error) (*cb.ConfigEnvelope, *channelconfig.Bundle, error) {
		return nil, nil, fmt.Errorf("config update for channel %s: %w", channelID, err)
	}
	cue, cu, err := parseUpdate(channelID, env)
	if err != nil {
		return fail(err)
	}
	signed, err := SignedData(cue)
	if err != nil {
		return fail(err)
	}
	cur, err := flatten(current.Config().GetChannelGroup())
	if err != nil {
		// The current configuration was accepted before; this is not the client's fault.
		return fail(fmt.Errorf("current configuration: %w", err))
	}
	group, err := apply(cur, cu, current.Policies(), signed)
	if err != nil {
		return fail(err)
	}
	config := &cb.Config{Sequence: current.Sequence() + 1, ChannelGroup: group}
	next, err := channelconfig.New(channelID, config)
	if err != nil {
		return fail(fmt.Errorf("%w: the resulting configuration does not parse: %v", ErrInvalidConfig, err))
	}
	if err := ValidateNew(current, next); err != nil {
		return fail(err)
	}
	return &cb.ConfigEnvelope{Config: config, LastUpdate: env}, next, nil
}

// parseUpdate takes a CONFIG_UPDATE envelope apart, checking its type and channel.
func parseUpdate(channelID string, env *cb.Envelope) (*cb.ConfigUpdateEnvelope, *cb.ConfigUpdate, error) {
	p, err := envelope.Parse(env)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if typ := cb.HeaderType(p.ChannelHeader.Type); typ != cb.HeaderType_CONFIG_UPDATE {
		return nil, nil, fmt.Errorf("%w: envelope is of type %s, not CONFIG_UPDATE", ErrMalformed, typ)
	}
	if p.ChannelHeader.ChannelId != channelID {
		return nil, nil, fmt.Errorf("%w: envelope is for channel %q", ErrWrongChannel, p.ChannelHeader.ChannelId)
	}
	cue := &cb.ConfigUpdateEnvelope{}
	if err := proto.Unmarshal(p.Payload.Data, cue); err != nil {
		return nil, nil, fmt.Errorf("%w: ConfigUpdateEnvelope: %v", ErrMalformed, err)
	}
	if len(cue.ConfigUpdate) == 0 {
		return nil, nil, fmt.Errorf("%w: ConfigUpdateEnvelope holds no config update", ErrMalformed)
	}
	cu := &cb.ConfigUpdate{}
	if err := proto.Unmarshal(cue.ConfigUpdate, cu); err != nil {
		return nil, nil, fmt.Errorf("%w: ConfigUpdate: %v", ErrMalformed, err)
	}
	if cu.ChannelId != channelID {
		return nil, nil, fmt.Errorf("%w: the config update inside the envelope is for channel %q", ErrWrongChannel, cu.ChannelId)
	}
	if cu.WriteSet == nil {
		return nil, nil, fmt.Errorf("%w: config update has no write set", ErrMalformed)
	}
	return cue, cu, nil
}

// SignedData turns the signatures of a config update into policy input: each
// ConfigSignature signs SignatureHeader ‖ ConfigUpdate, by the identity that
// is the SignatureHeader's creator.
func SignedData(cue *cb.ConfigUpdateEnvelope) ([]policy.SignedData, error) {
	out := make([]policy.SignedData, 0, len(cue.GetSignatures()))
	for i, cs := range cue.GetSignatures() {
		if cs == nil {
			return nil, fmt.Errorf("%w: config signature %d is empty", ErrMalformed, i)
		}
		sh := &cb.SignatureHeader{}
		if err := proto.Unmarshal(cs.SignatureHeader, sh); err != nil {
			return nil, fmt.Errorf("%w: config signature %d: signature header: %v", ErrMalformed, i, err)
		}
		data := make([]byte, 0, len(cs.SignatureHeader)+len(cue.ConfigUpdate))
		data = append(append(data, cs.SignatureHeader...), cue.ConfigUpdate...)
		out = append(out, policy.SignedData{Data: data, Identity: sh.Creator, Signature: cs.Signature})
	}
	return out, nil
}

// policySource is what apply needs of a channel's policies.
type policySource interface {
	Policy(path string) (policy.Policy, error)
}

// apply checks the update against the current configuration and the
// signatures and returns the new channel group.
func apply(cur configMap, cu *cb.ConfigUpdate, policies policySource, signed []policy.SignedData) (*cb.ConfigGroup, error) {
	read, err := flatten(cu.ReadSet)
	if err != nil {
		return nil, fmt.Errorf("%w: read set: %v", ErrInvalidUpdate, err)
	}
	for _, r := range read.sorted() {
		c, ok := cur[r.key]
		if !ok {
			return nil, fmt.Errorf("read set: the current configuration has no %s: %w", r.key, ErrVersionMismatch)
		}
		if c.version != r.version {
			return nil, fmt.Errorf("read set: %s is at version %d, but the update was computed against version %d: %w",
				r.key, c.version, r.version, ErrVersionMismatch)
		}
	}
	write, err := flatten(cu.WriteSet)
	if err != nil {
		return nil, fmt.Errorf("%w: write set: %v", ErrInvalidUpdate, err)
	}
	delta := configMap{}
	for k, w := range write {
		if r, ok := read[k]; ok && r.version == w.version {
			continue
		}
		delta[k] = w
	}
	if len(delta) == 0 {
		return nil, fmt.Errorf("%w: the write set changes nothing", ErrInvalidUpdate)
	}
	if err := authorise(cur, delta, policies, signed); err != nil {
		return nil, err
	}
	b := builder{cur: cur, delta: delta, used: map[key]bool{}}
	group, err := b.group("/"+rootGroup, 0)
	if err != nil {
		return nil, err
	}
	for _, d := range delta.sorted() {
		if !b.used[d.key] {
			return nil, fmt.Errorf("%w: %s is not part of the resulting configuration: its group %s does not list it (a new element needs its group's version raised)",
				ErrInvalidUpdate, d.key, parentOf(d))
		}
	}
	// The new tree shares values and policies with the current configuration
	// and the update; callers get a copy of their own.
	return proto.Clone(group).(*cb.ConfigGroup), nil
}

func parentOf(e *element) string {
	if e.key.kind != kindGroup {
		return e.group
	}
	for i := len(e.key.path) - 1; i > 0; i-- {
		if e.key.path[i] == '/' {
			return e.key.path[:i]
		}
	}
	return "/"
}

// authorise checks each changed element's version and mod_policy.
func authorise(cur, delta configMap, policies policySource, signed []policy.SignedData) error {
	results := map[string]error{} // policy path -> evaluation result
	for _, d := range delta.sorted() {
		if err := checkModPolicy(d.modPolicy); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalidUpdate, d.key, err)
		}
		c, ok := cur[d.key]
		if !ok {
			if d.version != 0 {
				return fmt.Errorf("%s is new, so its version must be 0, not %d: %w", d.key, d.version, ErrVersionMismatch)
			}
			if _, ok := delta[key{kindGroup, parentOf(d)}]; !ok {
				return fmt.Errorf("%w: %s is new but its group %s is not modified (its version must be raised)",
					ErrInvalidUpdate, d.key, parentOf(d))
			}
			continue
		}
		if d.version <= c.version {
			return fmt.Errorf("%s: the update sets version %d, but it is already at version %d (the update was computed against an older configuration): %w",
				d.key, d.version, c.version, ErrVersionMismatch)
		}
		if d.version != c.version+1 {
			return fmt.Errorf("%s: the update sets version %d, but it is at version %d and may only be raised by one: %w",
				d.key, d.version, c.version, ErrVersionMismatch)
		}
		if c.modPolicy == "" {
			return fmt.Errorf("%s has no mod_policy in the current configuration, so no update may change it: %w",
				d.key, policy.ErrNotSatisfied)
		}
		path := modPolicyPath(c)
		res, done := results[path]
		if !done {
			res = evaluate(policies, path, signed)
			results[path] = res
		}
		if res != nil {
			return fmt.Errorf("%s: change not authorised: %w", d.key, res)
		}
	}
	return nil
}

func evaluate(policies policySource, path string, signed []policy.SignedData) error {
	p, err := policies.Policy(path)
	if err != nil {
		return fmt.Errorf("%s: %w", policy.Explain(path, err), policy.ErrNotSatisfied)
	}
	if err := p.Evaluate(signed); err != nil {
		var pe *policy.Error
		if errors.As(err, &pe) {
			return err
		}
		return fmt.Errorf("%s: %w", policy.Explain(path, err), policy.ErrNotSatisfied)
	}
	return nil
}

// builder assembles the new configuration tree: a group modified by the
// update takes its attributes and membership from the write set, any other
// from the current configuration; each member comes from the delta if it
// changed, else from the current configuration.
type builder struct {
	cur, delta configMap
	used       map[key]bool
}

func (b *builder) pick(k key) (*element, error) {
	if d, ok := b.delta[k]; ok {
		b.used[k] = true
		return d, nil
	}
	if c, ok := b.cur[k]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w: %s is listed by its modified group but is neither in the current configuration nor changed by the update",
		ErrInvalidUpdate, k)
}

func (b *builder) group(path string, depth int) (*cb.ConfigGroup, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: groups nested deeper than %d at %s", ErrInvalidUpdate, maxDepth, path)
	}
	e, err := b.pick(key{kindGroup, path})
	if err != nil {
		return nil, err
	}
	src := e.cg
	out := &cb.ConfigGroup{
		Version:   src.Version,
		ModPolicy: src.ModPolicy,
		Groups:    make(map[string]*cb.ConfigGroup, len(src.Groups)),
		Values:    make(map[string]*cb.ConfigValue, len(src.Values)),
		Policies:  make(map[string]*cb.ConfigPolicy, len(src.Policies)),
	}
	for _, name := range sortedKeys(src.Groups) {
		g, err := b.group(path+"/"+name, depth+1)
		if err != nil {
			return nil, err
		}
		out.Groups[name] = g
	}
	for _, name := range sortedKeys(src.Values) {
		v, err := b.pick(key{kindValue, path + "/" + name})
		if err != nil {
			return nil, err
		}
		out.Values[name] = v.cv
	}
	for _, name := range sortedKeys(src.Policies) {
		p, err := b.pick(key{kindPolicy, path + "/" + name})
		if err != nil {
			return nil, err
		}
		out.Policies[name] = p.cp
	}
	return out, nil
}
