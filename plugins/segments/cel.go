package segments

import (
	"context"
	"fmt"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/functions"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
	"github.com/go-json-experiment/json"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

const (
	// eventTypeName and profileTypeName are the protobuf full names of the
	// CEL variables' types.
	eventTypeName   = "vigie.v1.Event"
	profileTypeName = "vigie.v1.Profile"

	// costLimit bounds the runtime cost of one expression on one event
	// (roughly, operations performed), so a pathological expression fails
	// that event instead of hanging the plugin.
	costLimit = 100_000
	// msPerDay converts milliseconds to days.
	msPerDay = 24 * 60 * 60 * 1000
)

// Late-bound function names: their implementation depends on the event
// being evaluated, so evalState supplies it per call.
const (
	fnProps     = "props"
	fnTraits    = "traits"
	fnDaysSince = "days_since_first_seen"
	fnCount     = "count"
)

// celEnv is the CEL environment shared by every expression; cel.Env is
// safe for concurrent use.
var celEnv = sync.OnceValues(newEnv)

// newEnv builds the CEL environment: variables event and profile typed as
// the protobuf messages, and Vigie's functions.
func newEnv() (*cel.Env, error) {
	eventT := cel.ObjectType(eventTypeName)
	profileT := cel.ObjectType(profileTypeName)
	jsonObject := cel.MapType(cel.StringType, cel.DynType)
	return cel.NewEnv(
		cel.Types(&vigiev1.Event{}, &vigiev1.Profile{}),
		cel.Variable("event", eventT),
		cel.Variable("profile", profileT),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		cel.Function(fnProps,
			cel.MemberOverload("event_props", []*cel.Type{eventT}, jsonObject, cel.LateFunctionBinding())),
		cel.Function(fnTraits,
			cel.MemberOverload("event_traits", []*cel.Type{eventT}, jsonObject, cel.LateFunctionBinding())),
		cel.Function(fnCount,
			cel.MemberOverload("profile_count_type_key_window",
				[]*cel.Type{profileT, cel.StringType, cel.StringType, cel.StringType}, cel.IntType,
				cel.FunctionBinding(countBinding)),
			cel.MemberOverload("profile_count_type_window",
				[]*cel.Type{profileT, cel.StringType, cel.StringType}, cel.IntType,
				cel.FunctionBinding(countBinding))),
		cel.Function("in_segment",
			cel.MemberOverload("profile_in_segment", []*cel.Type{profileT, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(inSegmentBinding))),
		cel.Function(fnDaysSince,
			cel.MemberOverload("profile_days_since_first_seen", []*cel.Type{profileT}, cel.IntType,
				cel.LateFunctionBinding())),
		cel.ASTValidators(windowValidator{}),
	)
}

// maxStringSize bounds the size of any string or bytes value an event or
// profile carries, for static cost estimation: the proxy refuses events
// over 32 KiB.
const maxStringSize = 32 << 10

// program plans an expression. Runtime cost tracking (cel.CostLimit) is
// not free, so it is only enabled when the static worst-case cost of the
// expression exceeds costLimit, i.e. when it iterates over data of
// unbounded size (profile.counters, a list in event.props()...); the
// others are provably cheap. It reports whether tracking is on.
func program(env *cel.Env, a *cel.Ast) (cel.Program, bool, error) {
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	est, err := env.EstimateCost(a, sizeEstimator{})
	tracked := err != nil || est.Max > costLimit
	if tracked {
		opts = append(opts, cel.CostLimit(costLimit))
	}
	prg, err := env.Program(a, opts...)
	return prg, tracked, err
}

// sizeEstimator bounds strings and bytes by maxStringSize and leaves
// everything else (lists, maps) unknown, hence unbounded.
type sizeEstimator struct{}

// EstimateSize implements cost.Estimator.
func (sizeEstimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if t := n.Type(); t != nil && (t.IsExactType(cel.StringType) || t.IsExactType(cel.BytesType)) {
		return &cost.SizeEstimate{Min: 0, Max: maxStringSize}
	}
	return nil
}

// EstimateCallCost implements cost.Estimator; nil keeps CEL's estimate.
func (sizeEstimator) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// validWindow reports whether w is a counter window the host maintains.
func validWindow(w string) bool {
	return w == "1d" || w == "7d" || w == "30d"
}

// keyMatches reports whether a counter key matches pattern: "*" matches
// any key, a pattern ending in '*' matches by prefix, anything else
// matches exactly.
func keyMatches(pattern, key string) bool {
	if n := len(pattern); n > 0 && pattern[n-1] == '*' {
		return len(key) >= n-1 && key[:n-1] == pattern[:n-1]
	}
	return key == pattern
}

// profileOf unwraps the *vigiev1.Profile of a CEL object.
func profileOf(v ref.Val) *vigiev1.Profile {
	p, _ := v.Value().(*vigiev1.Profile)
	return p
}

// countBinding implements profile.count(type, key, window) and
// profile.count(type, window): the sum of the matching counters.
func countBinding(args ...ref.Val) ref.Val {
	var typ, pattern, window types.String
	var ok1, ok2, ok3 bool
	switch len(args) {
	case 4:
		typ, ok1 = args[1].(types.String)
		pattern, ok2 = args[2].(types.String)
		window, ok3 = args[3].(types.String)
	case 3:
		typ, ok1 = args[1].(types.String)
		pattern, ok2 = "*", true
		window, ok3 = args[2].(types.String)
	}
	if !ok1 || !ok2 || !ok3 {
		return types.NewErr("count: no matching overload")
	}
	if !validWindow(string(window)) {
		return types.NewErr("count: unknown window %q (want \"1d\", \"7d\" or \"30d\")", string(window))
	}
	var sum int64
	for _, c := range profileOf(args[0]).GetCounters() {
		if c.GetType() == string(typ) && c.GetWindow() == string(window) && keyMatches(string(pattern), c.GetKey()) {
			sum += c.GetCount()
		}
	}
	return types.Int(sum)
}

// inSegmentBinding implements profile.in_segment(name).
func inSegmentBinding(p, name ref.Val) ref.Val {
	n, ok := name.(types.String)
	if !ok {
		return types.NewErr("in_segment: no matching overload")
	}
	for _, s := range profileOf(p).GetSegments() {
		if s == string(n) {
			return types.True
		}
	}
	return types.False
}

// windowValidator refuses, at compile time, a literal counter window other
// than 1d, 7d or 30d in profile.count(...). Non-literal windows are
// checked when evaluated.
type windowValidator struct{}

// Name implements cel.ASTValidator.
func (windowValidator) Name() string { return "vigie.validator.count_window" }

// Validate implements cel.ASTValidator.
func (windowValidator) Validate(_ *cel.Env, _ cel.ValidatorConfig, a *ast.AST, iss *cel.Issues) {
	for _, call := range ast.MatchDescendants(ast.NavigateAST(a), ast.FunctionMatcher(fnCount)) {
		args := call.AsCall().Args()
		if len(args) == 0 {
			continue
		}
		w := args[len(args)-1]
		if w.Kind() != ast.LiteralKind {
			continue
		}
		if s, ok := w.AsLiteral().(types.String); ok && !validWindow(string(s)) {
			iss.ReportErrorAtID(w.ID(), "unknown counter window %q (want \"1d\", \"7d\" or \"30d\")", string(s))
		}
	}
}

// evalState is the activation of one Segment call: the event and profile
// as CEL values, and the late-bound functions that need the event (its
// JSON properties and traits are decoded at most once per call, and only
// when an expression asks). Pooled by Segmenter.
type evalState struct {
	adapter types.Adapter
	event   ref.Val
	profile ref.Val
	ev      *vigiev1.Event
	atMs    int64

	props, traits ref.Val // decoded lazily; nil until then

	propsFn, traitsFn, daysFn functions.LateBoundOp
}

// newEvalState returns a state whose late-bound closures are built once.
func newEvalState(adapter types.Adapter) *evalState {
	s := &evalState{adapter: adapter}
	s.propsFn = func(string, ...ref.Val) ref.Val {
		if s.props == nil {
			s.props = s.decodeJSON("properties", s.ev.GetProperties())
		}
		return s.props
	}
	s.traitsFn = func(string, ...ref.Val) ref.Val {
		if s.traits == nil {
			s.traits = s.decodeJSON("traits", s.ev.GetTraits())
		}
		return s.traits
	}
	s.daysFn = func(_ string, args ...ref.Val) ref.Val {
		first := profileOf(args[0]).GetFirstSeenMs()
		if first <= 0 || s.atMs <= first {
			return types.IntZero
		}
		return types.Int((s.atMs - first) / msPerDay)
	}
	return s
}

// reset prepares s for one event and its profile (neither nil).
func (s *evalState) reset(ev *vigiev1.Event, p *vigiev1.Profile) {
	s.ev = ev
	s.atMs = eventTime(ev)
	s.event = s.adapter.NativeToValue(ev)
	s.profile = s.adapter.NativeToValue(p)
	s.props, s.traits = nil, nil
}

// setProfile replaces the profile the expressions see.
func (s *evalState) setProfile(p *vigiev1.Profile) {
	s.profile = s.adapter.NativeToValue(p)
}

// clear drops references to the event so the pool keeps no data alive.
func (s *evalState) clear() {
	s.ev, s.event, s.profile, s.props, s.traits = nil, nil, nil, nil, nil
}

// decodeJSON decodes a JSON object field of the event into a CEL map; an
// empty field is an empty map.
func (s *evalState) decodeJSON(field string, raw []byte) ref.Val {
	if len(raw) == 0 {
		return s.adapter.NativeToValue(map[string]any{})
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return types.NewErr("event %s: not a JSON object", field)
	}
	if m == nil {
		m = map[string]any{}
	}
	return s.adapter.NativeToValue(m)
}

// ResolveName implements interpreter.Activation.
func (s *evalState) ResolveName(name string) (any, bool) {
	switch name {
	case "event":
		return s.event, true
	case "profile":
		return s.profile, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (s *evalState) Parent() interpreter.Activation { return nil }

// ResolveFunction implements interpreter.FunctionActivation.
func (s *evalState) ResolveFunction(name string) (functions.LateBoundOp, bool) {
	switch name {
	case fnProps:
		return s.propsFn, true
	case fnTraits:
		return s.traitsFn, true
	case fnDaysSince:
		return s.daysFn, true
	}
	return nil, false
}

// eventTime is the event's time in Unix milliseconds: its timestamp, or
// when Vigie received it if the timestamp is missing.
func eventTime(ev *vigiev1.Event) int64 {
	if t := ev.GetTimestampMs(); t > 0 {
		return t
	}
	return ev.GetReceivedAtMs()
}

// evalBool runs prg against s. ctx is checked before evaluating; during
// evaluation the cost limit bounds the work instead (ContextEval would
// cost a cancellable context per expression and event).
func evalBool(ctx context.Context, prg cel.Program, s *evalState) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	out, _, err := prg.Eval(s)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("result is %s, not bool", out.Type().TypeName())
	}
	return bool(b), nil
}
