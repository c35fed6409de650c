package pseudonymize

//go:generate ./update.sh

import (
	_ "embed"
	"encoding/json"
	"log/slog"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
)

// crawlerJSON is crawler-user-agents.json from the npm package
// crawler-user-agents (version in crawler-user-agents.VERSION, MIT licence).
// Refresh it with update.sh.
//
//go:embed crawler-user-agents.json
var crawlerJSON []byte

//go:embed crawler-user-agents.VERSION
var crawlerVersion string

// maxLitSet bounds the literal sets derived from one pattern.
const maxLitSet = 64

// crawlerIndex matches user agents against the crawler pattern list.
//
// Each pattern is reduced once to a set of literals that any matching user
// agent must contain. When the set is exactly equivalent to the pattern the
// regexp never runs; otherwise a literal hit is confirmed with the pattern's
// compiled regexp. Literals are found with one pass over the user agent and a
// table indexed by the first two bytes of each literal. Patterns with no
// usable literal are combined into one alternation that always runs.
type crawlerIndex struct {
	lits    []crawlerLit
	start   []uint32 // start[b0<<8|b1] .. start[b0<<8|b1+1] indexes order
	order   []uint32 // literal indexes grouped by first two bytes
	confirm []*regexp.Regexp
	rest    *regexp.Regexp // leftover patterns, nil if none

	total, skipped, fallback int
}

type crawlerLit struct {
	s   string
	pat int32 // index into confirm, -1 when the literal alone decides
}

var crawlers = sync.OnceValue(func() *crawlerIndex {
	var entries []struct {
		Pattern string `json:"pattern"`
	}
	if err := json.Unmarshal(crawlerJSON, &entries); err != nil {
		// The file is embedded and checked by tests; failing here is a build defect.
		panic("pseudonymize: embedded crawler-user-agents.json: " + err.Error())
	}
	pats := make([]string, len(entries))
	for i, e := range entries {
		pats[i] = e.Pattern
	}
	idx := buildCrawlerIndex(pats)
	if idx.skipped > 0 {
		slog.Warn("pseudonymize: crawler patterns skipped", "skipped", idx.skipped, "total", idx.total)
	}
	return idx
})

func buildCrawlerIndex(patterns []string) *crawlerIndex {
	idx := &crawlerIndex{total: len(patterns)}
	var rest []string
	for _, pat := range patterns {
		re, err := syntax.Parse(pat, syntax.Perl)
		if err != nil {
			idx.skipped++
			continue
		}
		re = re.Simplify()
		if set, ok := literalLang(re); ok && usableLits(set) {
			for _, s := range set {
				idx.lits = append(idx.lits, crawlerLit{s: s, pat: -1})
			}
			continue
		}
		set := necessaryLits(re)
		if !usableLits(set) {
			rest = append(rest, "(?:"+pat+")")
			idx.fallback++
			continue
		}
		cre, err := regexp.Compile(pat)
		if err != nil {
			idx.skipped++
			continue
		}
		pi := int32(len(idx.confirm))
		idx.confirm = append(idx.confirm, cre)
		for _, s := range set {
			idx.lits = append(idx.lits, crawlerLit{s: s, pat: pi})
		}
	}
	if len(rest) > 0 {
		if re, err := regexp.Compile(strings.Join(rest, "|")); err == nil {
			idx.rest = re
		} else {
			idx.skipped += len(rest)
		}
	}
	idx.buildTable()
	return idx
}

// usableLits reports whether every literal has at least 2 bytes, so the
// bigram table can find it.
func usableLits(set []string) bool {
	if len(set) == 0 {
		return false
	}
	for _, s := range set {
		if len(s) < 2 {
			return false
		}
	}
	return true
}

func (idx *crawlerIndex) buildTable() {
	counts := make([]uint32, 1<<16+1)
	for _, l := range idx.lits {
		counts[bigram(l.s)+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	idx.start = counts
	idx.order = make([]uint32, len(idx.lits))
	fill := slices.Clone(counts[:1<<16])
	for i, l := range idx.lits {
		b := bigram(l.s)
		idx.order[fill[b]] = uint32(i)
		fill[b]++
	}
}

func bigram(s string) int { return int(s[0])<<8 | int(s[1]) }

// match reports whether ua matches any crawler pattern.
func (idx *crawlerIndex) match(ua string) bool {
	for i := 0; i+1 < len(ua); i++ {
		b := bigram(ua[i:])
		for _, li := range idx.order[idx.start[b]:idx.start[b+1]] {
			l := &idx.lits[li]
			if !strings.HasPrefix(ua[i:], l.s) {
				continue
			}
			if l.pat < 0 || idx.confirm[l.pat].MatchString(ua) {
				return true
			}
		}
	}
	return idx.rest != nil && idx.rest.MatchString(ua)
}

// literalLang returns the finite set of strings re matches exactly, or false
// when that set is infinite, too large, anchored or case-folded.
func literalLang(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if len(out) >= 16 {
					return nil, false
				}
				out = append(out, string(r))
			}
		}
		return out, true
	case syntax.OpCapture:
		return literalLang(re.Sub[0])
	case syntax.OpQuest:
		set, ok := literalLang(re.Sub[0])
		if !ok {
			return nil, false
		}
		return append(set, ""), true
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			set, ok := literalLang(sub)
			if !ok || len(out)+len(set) > maxLitSet {
				return nil, false
			}
			out = append(out, set...)
		}
		return out, true
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			set, ok := literalLang(sub)
			if !ok {
				return nil, false
			}
			if out = crossLits(out, set); out == nil {
				return nil, false
			}
		}
		return out, true
	}
	return nil, false
}

func crossLits(a, b []string) []string {
	if len(a)*len(b) > maxLitSet {
		return nil
	}
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			out = append(out, x+y)
		}
	}
	return out
}

// necessaryLits returns a set of literals one of which every string matching
// re (as a substring search) contains, or nil when there is none.
func necessaryLits(re *syntax.Regexp) []string {
	if set, ok := literalLang(re); ok {
		if slices.Contains(set, "") {
			return nil
		}
		return set
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return necessaryLits(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return necessaryLits(re.Sub[0])
		}
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			set := necessaryLits(sub)
			if set == nil || len(out)+len(set) > maxLitSet {
				return nil
			}
			out = append(out, set...)
		}
		return out
	case syntax.OpConcat:
		var best []string
		consider := func(set []string) {
			if set != nil && !slices.Contains(set, "") && betterLits(set, best) {
				best = set
			}
		}
		run := []string{""}
		for _, sub := range re.Sub {
			if set, ok := literalLang(sub); ok {
				if next := crossLits(run, set); next != nil {
					run = next
					continue
				}
				consider(run)
				run = set
				continue
			}
			consider(run)
			run = []string{""}
			consider(necessaryLits(sub))
		}
		consider(run)
		return best
	}
	return nil
}

// betterLits prefers the set whose shortest literal is longest, then the smaller set.
func betterLits(a, b []string) bool {
	if b == nil {
		return true
	}
	ma, mb := minLen(a), minLen(b)
	if ma != mb {
		return ma > mb
	}
	return len(a) < len(b)
}

func minLen(set []string) int {
	m := -1
	for _, s := range set {
		if m < 0 || len(s) < m {
			m = len(s)
		}
	}
	return m
}
