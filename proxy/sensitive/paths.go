package sensitive

import (
	"fmt"
	"strings"
)

// PathRule declares a section of the site as sensitive: every page whose
// URL path matches Pattern is a detection of Category in the
// sensitive_paths layer.
//
// A pattern is an absolute path of segments compared without regard to
// ASCII case, with %XX escapes in the page's path decoded. "*" as a whole
// segment matches any one segment; "*" inside a segment matches any run of
// characters ("/sante-*"); a final "/*" matches the section itself and
// everything below it, at any depth ("/clinic/*" matches "/clinic",
// "/clinic/" and "/clinic/oncology/rdv"). Without a final "/*" the whole
// path must match (a trailing slash does not count).
type PathRule struct {
	Pattern  string
	Category Category
}

// pathRule is a compiled PathRule.
type pathRule struct {
	segs    []string // lower-cased
	subtree bool
	rule    PathRule
}

func compilePath(r PathRule) (pathRule, error) {
	p := r.Pattern
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# ") {
		return pathRule{}, fmt.Errorf("%w: %q must be an absolute path without query, fragment or spaces", ErrInvalidPath, p)
	}
	if r.Category >= NumCategories {
		return pathRule{}, fmt.Errorf("%w: %q: no category", ErrInvalidPath, p)
	}
	c := pathRule{rule: r}
	rest := strings.TrimSuffix(p, "/")
	if s, ok := strings.CutSuffix(rest, "/*"); ok {
		c.subtree, rest = true, s
	} else if rest == "/*" || rest == "*" {
		c.subtree, rest = true, ""
	}
	for _, seg := range strings.Split(strings.TrimPrefix(rest, "/"), "/") {
		if seg == "" {
			if rest == "" {
				break
			}
			return pathRule{}, fmt.Errorf("%w: %q has an empty segment", ErrInvalidPath, p)
		}
		if strings.Contains(seg, "**") {
			return pathRule{}, fmt.Errorf("%w: %q: use a final /* for a whole section, not **", ErrInvalidPath, p)
		}
		c.segs = append(c.segs, strings.ToLower(seg))
	}
	return c, nil
}

// match reports whether path matches the rule. It does not allocate.
func (c *pathRule) match(path string) bool {
	rest := path
	for _, seg := range c.segs {
		var s string
		var ok bool
		if s, rest, ok = nextSegment(rest); !ok {
			return false
		}
		if !globFold(seg, s) {
			return false
		}
	}
	if c.subtree {
		return true
	}
	_, _, more := nextSegment(rest)
	return !more
}

// nextSegment returns the first non-empty segment of path and what
// follows it.
func nextSegment(path string) (seg, rest string, ok bool) {
	for len(path) > 0 && path[0] == '/' {
		path = path[1:]
	}
	if path == "" {
		return "", "", false
	}
	if i := strings.IndexByte(path, '/'); i >= 0 {
		return path[:i], path[i:], true
	}
	return path, "", true
}

// globFold matches segment s (its %XX escapes decoded, ASCII case
// ignored) against the lower-cased pattern p, where '*' matches any run.
func globFold(p, s string) bool {
	if p == "*" {
		return true
	}
	// Iterative wildcard matching with one backtrack point.
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		c, w := segByte(s, si)
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
			continue
		case pi < len(p) && p[pi] == c:
			pi++
			si += w
			continue
		case star >= 0:
			pi = star + 1
			_, w2 := segByte(s, mark)
			mark += w2
			si = mark
			continue
		}
		return false
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// segByte is the byte at s[i] with %XX decoded and ASCII lower-cased, and
// how many source bytes it took.
func segByte(s string, i int) (byte, int) {
	c, w := s[i], 1
	if c == '%' && i+2 < len(s) {
		if b, ok := hex2(s[i+1 : i+3]); ok {
			c, w = b, 3
		}
	}
	if 'A' <= c && c <= 'Z' {
		c += 'a' - 'A'
	}
	return c, w
}
