package policy

import (
	"errors"
	"log/slog"
)

// LogAttr renders a policy failure as one structured log attribute, so logs
// carry which policy failed, what was missing and why each offered identity
// did not count as fields (policy.path, policy.rule, policy.missing,
// policy.signatures[], policy.sub_policies[]) rather than only as text. Errors
// that are not policy failures give an empty attribute, which slog drops.
func LogAttr(err error) slog.Attr {
	var pe *Error
	if !errors.As(err, &pe) {
		return slog.Attr{}
	}
	return slog.Any("policy", errorValue(pe))
}

func errorValue(e *Error) map[string]any {
	v := map[string]any{
		"rule":      e.Rule,
		"required":  e.Required,
		"satisfied": e.Satisfied,
		"total":     e.Total,
	}
	if e.Path != "" {
		v["path"] = e.Path
	}
	if len(e.Missing) > 0 {
		v["missing"] = e.Missing
	}
	if e.Cause != nil {
		v["cause"] = e.Cause.Error()
	}
	var sigs []map[string]any
	for _, s := range e.Signatures {
		sig := map[string]any{"index": s.Index, "msp_id": s.MSPID, "subject": s.Subject, "counted": s.Counted}
		if s.Counted {
			sig["counted_for"] = s.CountedFor
		} else {
			sig["reason"] = s.Reason
		}
		sigs = append(sigs, sig)
	}
	if len(sigs) > 0 {
		v["signatures"] = sigs
	}
	var subs []map[string]any
	for _, sp := range e.SubPolicies {
		subs = append(subs, errorValue(sp))
	}
	if len(subs) > 0 {
		v["sub_policies"] = subs
	}
	return v
}
