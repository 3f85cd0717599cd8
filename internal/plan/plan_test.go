package plan_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/msp/msptest"
	"github.com/cairn-ledger/cairn/internal/plan"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// fixture is a channel of three organisations with two peers each, and the
// policies Cairn's genesis writes: each org's Endorsement OR('OrgN.peer'),
// /Channel/Application/Endorsement and LifecycleEndorsement MAJORITY.
type fixture struct {
	channel *cb.ConfigGroup
	peers   []plan.Peer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	var cas []*msptest.CA
	for i := 1; i <= 3; i++ {
		cas = append(cas, msptest.NewCA(t, fmt.Sprintf("Org%dMSP", i)))
	}
	ids := msptest.Manager(t, cas...)
	f := &fixture{}
	app := &cb.ConfigGroup{Groups: map[string]*cb.ConfigGroup{}, Policies: map[string]*cb.ConfigPolicy{
		"Endorsement":          meta(t, cb.ImplicitMetaPolicy_MAJORITY, "Endorsement"),
		"LifecycleEndorsement": meta(t, cb.ImplicitMetaPolicy_MAJORITY, "Endorsement"),
		"AllEndorsement":       meta(t, cb.ImplicitMetaPolicy_ALL, "Endorsement"),
		"AnyEndorsement":       meta(t, cb.ImplicitMetaPolicy_ANY, "Endorsement"),
	}}
	for i, ca := range cas {
		app.Groups[ca.MSPID] = &cb.ConfigGroup{Policies: map[string]*cb.ConfigPolicy{
			"Endorsement": sig(t, fmt.Sprintf("OR('%s.peer')", ca.MSPID)),
		}}
		for j := range 2 {
			leaf := ca.Issue(t, fmt.Sprintf("peer%d", j), msptest.OUPeer)
			id, err := ids.Deserialize(leaf.Serialize())
			if err != nil {
				t.Fatal(err)
			}
			f.peers = append(f.peers, plan.Peer{
				Address: fmt.Sprintf("peer%d.org%d:7051", j, i+1), MSPID: ca.MSPID, Identity: id,
				Height: 10, Local: i == 0 && j == 0,
			})
		}
	}
	f.channel = &cb.ConfigGroup{Groups: map[string]*cb.ConfigGroup{"Application": app}}
	return f
}

func sig(t *testing.T, dsl string) *cb.ConfigPolicy {
	t.Helper()
	spe := dslPolicy(t, dsl)
	raw, err := proto.Marshal(spe)
	if err != nil {
		t.Fatal(err)
	}
	return &cb.ConfigPolicy{Policy: &cb.Policy{Type: int32(cb.Policy_SIGNATURE), Value: raw}}
}

func meta(t *testing.T, rule cb.ImplicitMetaPolicy_Rule, sub string) *cb.ConfigPolicy {
	t.Helper()
	raw, err := proto.Marshal(&cb.ImplicitMetaPolicy{Rule: rule, SubPolicy: sub})
	if err != nil {
		t.Fatal(err)
	}
	return &cb.ConfigPolicy{Policy: &cb.Policy{Type: int32(cb.Policy_IMPLICIT_META), Value: raw}}
}

func dslPolicy(t *testing.T, dsl string) *cb.SignaturePolicyEnvelope {
	t.Helper()
	spe, err := policy.ParseDSL(dsl)
	if err != nil {
		t.Fatal(err)
	}
	return spe
}

// describe renders layouts by the MSP IDs of their groups' peers, e.g.
// "Org1MSP×1 Org2MSP×1", in plan order.
func describe(layouts []plan.Layout, groups map[string][]plan.Peer) []string {
	var out []string
	for _, l := range layouts {
		var parts []string
		for g, n := range l {
			parts = append(parts, fmt.Sprintf("%s×%d", groups[g][0].MSPID, n))
		}
		sort.Strings(parts)
		out = append(out, strings.Join(parts, " "))
	}
	return out
}

func TestLayouts(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		reqs []plan.Requirement
		want []string
	}{
		{"AND", []plan.Requirement{{Signature: dslPolicy(t, "AND('Org1MSP.peer','Org2MSP.peer')")}},
			[]string{"Org1MSP×1 Org2MSP×1"}},
		{"OR", []plan.Requirement{{Signature: dslPolicy(t, "OR('Org1MSP.peer','Org2MSP.member','Org3MSP.peer')")}},
			[]string{"Org1MSP×1", "Org2MSP×1", "Org3MSP×1"}},
		{"OutOf", []plan.Requirement{{Signature: dslPolicy(t, "OutOf(2,'Org1MSP.peer','Org2MSP.peer','Org3MSP.peer')")}},
			[]string{"Org1MSP×1 Org2MSP×1", "Org1MSP×1 Org3MSP×1", "Org2MSP×1 Org3MSP×1"}},
		{"two signatures of one org add up", []plan.Requirement{{Signature: dslPolicy(t, "AND('Org1MSP.peer','Org1MSP.member')")}},
			[]string{"Org1MSP×2"}},
		{"MAJORITY channel policy", []plan.Requirement{{Ref: "/Channel/Application/Endorsement"}},
			[]string{"Org1MSP×1 Org2MSP×1", "Org1MSP×1 Org3MSP×1", "Org2MSP×1 Org3MSP×1"}},
		{"relative reference", []plan.Requirement{{Ref: "Application/LifecycleEndorsement"}},
			[]string{"Org1MSP×1 Org2MSP×1", "Org1MSP×1 Org3MSP×1", "Org2MSP×1 Org3MSP×1"}},
		{"ALL", []plan.Requirement{{Ref: "/Channel/Application/AllEndorsement"}},
			[]string{"Org1MSP×1 Org2MSP×1 Org3MSP×1"}},
		{"ANY", []plan.Requirement{{Ref: "/Channel/Application/AnyEndorsement"}},
			[]string{"Org1MSP×1", "Org2MSP×1", "Org3MSP×1"}},
		{"an organisation's own policy (lifecycle approval)", []plan.Requirement{{Ref: "/Channel/Application/Org2MSP/Endorsement"}},
			[]string{"Org2MSP×1"}},
		{"key-level policy added to the chaincode's", []plan.Requirement{
			{Signature: dslPolicy(t, "OR('Org1MSP.peer','Org2MSP.peer')")},
			{Signature: dslPolicy(t, "AND('Org3MSP.peer')")},
		}, []string{"Org1MSP×1 Org3MSP×1", "Org2MSP×1 Org3MSP×1"}},
		{"invoked chaincode's policy combined by maximum", []plan.Requirement{
			{Signature: dslPolicy(t, "AND('Org1MSP.peer','Org1MSP.peer')")},
			{Ref: "/Channel/Application/Endorsement"},
		}, []string{"Org1MSP×2 Org2MSP×1", "Org1MSP×2 Org3MSP×1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			layouts, groups, err := plan.Layouts(f.channel, tc.reqs, f.peers)
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(layouts, groups); !slices.Equal(got, tc.want) {
				t.Fatalf("layouts %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLayoutsUnsatisfiable(t *testing.T) {
	f := newFixture(t)
	for _, reqs := range [][]plan.Requirement{
		{{Signature: dslPolicy(t, "OR('Org1MSP.admin')")}},                                                                     // peers are not admins
		{{Signature: dslPolicy(t, "AND('Org4MSP.peer')")}},                                                                     // unknown organisation
		{{Signature: dslPolicy(t, "OutOf(3,'Org1MSP.peer','Org1MSP.peer','Org1MSP.peer')")}, {Ref: "Application/Endorsement"}}, // needs 3 of 2
	} {
		layouts, groups, err := plan.Layouts(f.channel, reqs, f.peers)
		if len(reqs) == 2 {
			// Planned, but the plan has no viable layout: only two Org1 peers.
			if err != nil {
				t.Fatal(err)
			}
			if plan.New(layouts, groups).Viable() {
				t.Fatal("a layout needing three Org1 peers is viable with two")
			}
			continue
		}
		if !errors.Is(err, plan.ErrUnsatisfiable) {
			t.Fatalf("Layouts = %v, %v; want ErrUnsatisfiable", describe(layouts, groups), err)
		}
	}
	if _, _, err := plan.Layouts(f.channel, []plan.Requirement{{Ref: "/Channel/Application/Nope"}}, f.peers); err == nil {
		t.Fatal("missing policy accepted")
	}
}

func TestGroupOrder(t *testing.T) {
	f := newFixture(t)
	f.peers[0].Height, f.peers[1].Height = 10, 10 // local peer0.org1 first among equals
	_, groups, err := plan.Layouts(f.channel, []plan.Requirement{{Signature: dslPolicy(t, "OR('Org1MSP.peer')")}}, f.peers)
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range groups {
		if !ps[0].Local {
			t.Fatalf("group order %v, want the local peer first at equal height", ps)
		}
	}
	f.peers[1].Height = 11
	_, groups, _ = plan.Layouts(f.channel, []plan.Requirement{{Signature: dslPolicy(t, "OR('Org1MSP.peer')")}}, f.peers)
	for _, ps := range groups {
		if ps[0].Address != "peer1.org1:7051" {
			t.Fatalf("group order %v, want the highest peer first", ps)
		}
	}
}

func response(payload string, endorser string) *pb.ProposalResponse {
	return &pb.ProposalResponse{
		Response:    &pb.Response{Status: 200},
		Payload:     []byte(payload),
		Endorsement: &pb.Endorsement{Endorser: []byte(endorser)},
	}
}

func TestPlanRetriesInGroupAndAbandonsLayouts(t *testing.T) {
	f := newFixture(t)
	layouts, groups, err := plan.Layouts(f.channel, []plan.Requirement{{Ref: "/Channel/Application/Endorsement"}}, f.peers)
	if err != nil {
		t.Fatal(err)
	}
	p := plan.New(layouts, groups)
	local := f.peers[0]
	p.Prefer(local)
	if !p.Endorsed(local, response("same", local.Address)) {
		t.Fatal("first endorsement refused")
	}
	// The first layout using Org1 needs Org2 next.
	next := p.Endorsers()
	if len(next) != 1 || next[0].MSPID != "Org2MSP" {
		t.Fatalf("endorsers %v, want one Org2 peer", next)
	}
	// Both Org2 peers fail: the layouts needing Org2 are abandoned.
	retry, ok := p.Retry(next[0])
	if !ok || retry.MSPID != "Org2MSP" || retry.Address == next[0].Address {
		t.Fatalf("retry %v %v, want the other Org2 peer", retry, ok)
	}
	if _, ok := p.Retry(retry); ok {
		t.Fatal("a third Org2 peer offered")
	}
	next = p.Endorsers()
	if len(next) != 1 || next[0].MSPID != "Org3MSP" {
		t.Fatalf("endorsers after Org2 failed %v, want an Org3 peer (Org1 already endorsed)", next)
	}
	// A different result is refused and does not count.
	if p.Endorsed(next[0], response("other", next[0].Address)) {
		t.Fatal("mismatching payload accepted")
	}
	if p.Completed() != nil {
		t.Fatal("completed with a mismatching endorsement")
	}
	retry, ok = p.Retry(next[0])
	if !ok {
		t.Fatal("no second Org3 peer")
	}
	if !p.Endorsed(retry, response("same", retry.Address)) {
		t.Fatal("matching endorsement refused")
	}
	got := p.Completed()
	if len(got) != 2 || string(got[0].Endorsement.Endorser) != local.Address || string(got[1].Endorsement.Endorser) != retry.Address {
		t.Fatalf("completed with %v", got)
	}
}

func TestPlanExhausted(t *testing.T) {
	f := newFixture(t)
	layouts, groups, err := plan.Layouts(f.channel, []plan.Requirement{{Signature: dslPolicy(t, "AND('Org1MSP.peer','Org2MSP.peer')")}}, f.peers)
	if err != nil {
		t.Fatal(err)
	}
	p := plan.New(layouts, groups)
	first := p.Endorsers()
	if len(first) != 2 {
		t.Fatalf("endorsers %v, want one per organisation", first)
	}
	for _, e := range first {
		if e.MSPID == "Org2MSP" {
			r, _ := p.Retry(e)
			if _, ok := p.Retry(r); ok {
				t.Fatal("Org2 has a third peer")
			}
		}
	}
	if p.Endorsers() != nil || p.Viable() {
		t.Fatal("a layout survived its group running out")
	}
}
