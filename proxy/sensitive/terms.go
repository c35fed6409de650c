package sensitive

import (
	"bufio"
	"embed"
	"fmt"
	"slices"
	"strings"
)

// termFiles are the term lists, one per language (terms/README.md says
// how they are written and where they come from).
//
//go:embed terms/*.txt
var termFiles embed.FS

// Languages are the languages of the embedded term lists.
var Languages = []string{"en", "fr", "de", "es", "it"}

// minStem is the shortest stem a "word*" term may have: shorter ones
// match too many unrelated words.
const minStem = 4

// termLayers are the layers a term list section can name.
var termLayers = map[string]Layer{"names": LayerNames, "values": LayerValues, "page": LayerPage}

// info is what a trie terminal matches: per layer, the categories.
type info [LayerPage + 1]Categories

// trie is the matcher of every language's terms: nodes over normalized
// bytes (' ' between the words of a term). A terminal is exact (the token
// must end there) or a stem (any continuation of the token matches).
type trie struct {
	root  [256]int32 // first byte → node, 0 = none
	nodes []tnode
	edges []tedge
	dense [][256]int32 // child tables of the nodes with many children
	infos []info
}

type tnode struct {
	first, n    uint32 // edges[first : first+n], sorted by byte
	exact, stem int32  // index+1 into infos, 0 = not a terminal
	dense       int32  // index+1 into dense, 0 = use edges
}

// denseMin is the number of children from which a node gets a table
// instead of a sorted edge list.
const denseMin = 6

type tedge struct {
	b     byte
	child int32
}

// child returns the node after byte c from node n, or 0.
func (t *trie) child(n int32, c byte) int32 {
	if n == 0 {
		return t.root[c]
	}
	nd := &t.nodes[n]
	if nd.dense != 0 {
		return t.dense[nd.dense-1][c]
	}
	es := t.edges[nd.first : nd.first+nd.n]
	for i := range es {
		if es[i].b == c {
			return es[i].child
		}
		if es[i].b > c {
			break
		}
	}
	return 0
}

// builder collects terms before the trie is frozen.
type builder struct {
	nodes []bnode
}

type bnode struct {
	kids        map[byte]int32
	exact, stem info
	hasE, hasS  bool
}

func newBuilder() *builder { return &builder{nodes: make([]bnode, 1)} }

// add inserts the normalized term key for cat in layers.
func (b *builder) add(key string, stem bool, cat Category, layers []Layer) {
	n := int32(0)
	for i := 0; i < len(key); i++ {
		nd := &b.nodes[n]
		if nd.kids == nil {
			nd.kids = map[byte]int32{}
		}
		c, ok := nd.kids[key[i]]
		if !ok {
			c = int32(len(b.nodes))
			b.nodes[n].kids[key[i]] = c
			b.nodes = append(b.nodes, bnode{})
		}
		n = c
	}
	nd := &b.nodes[n]
	for _, l := range layers {
		if stem {
			nd.stem[l] = nd.stem[l].With(cat)
			nd.hasS = true
		} else {
			nd.exact[l] = nd.exact[l].With(cat)
			nd.hasE = true
		}
	}
}

// freeze turns the builder into a trie.
func (b *builder) freeze() *trie {
	t := &trie{nodes: make([]tnode, len(b.nodes))}
	infoIdx := map[info]int32{}
	intern := func(in info) int32 {
		if i, ok := infoIdx[in]; ok {
			return i
		}
		t.infos = append(t.infos, in)
		infoIdx[in] = int32(len(t.infos))
		return int32(len(t.infos))
	}
	for i := range b.nodes {
		bn := &b.nodes[i]
		keys := make([]byte, 0, len(bn.kids))
		for k := range bn.kids {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if i == 0 {
			for _, k := range keys {
				t.root[k] = bn.kids[k]
			}
		}
		t.nodes[i].first, t.nodes[i].n = uint32(len(t.edges)), uint32(len(keys))
		if i > 0 && len(keys) >= denseMin {
			var d [256]int32
			for _, k := range keys {
				d[k] = bn.kids[k]
			}
			t.dense = append(t.dense, d)
			t.nodes[i].dense = int32(len(t.dense))
		}
		for _, k := range keys {
			t.edges = append(t.edges, tedge{b: k, child: bn.kids[k]})
		}
		if bn.hasE {
			t.nodes[i].exact = intern(bn.exact)
		}
		if bn.hasS {
			t.nodes[i].stem = intern(bn.stem)
		}
	}
	return t
}

// parseTerms adds one language's list to b. Syntax (terms/README.md):
// "# comment", "@endings s es" (the inflection endings "word+" adds),
// "[category: layer …]" opening a section, then one term a line: words,
// the last one optionally ending in "*" (stem) or "+" (endings).
func parseTerms(b *builder, name, text string) error {
	var endings []string
	var cat Category
	var layers []Layer
	inSection := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for ln := 1; sc.Scan(); ln++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: %s:%d: %s", ErrInvalidTerms, name, ln, fmt.Sprintf(format, a...))
		}
		switch {
		case line == "":
		case strings.HasPrefix(line, "@endings"):
			endings = strings.Fields(strings.TrimPrefix(line, "@endings"))
		case strings.HasPrefix(line, "@"):
			return bad("unknown directive %q", line)
		case strings.HasPrefix(line, "["):
			head, ok := strings.CutSuffix(line[1:], "]")
			c, ls, ok2 := strings.Cut(head, ":")
			if !ok || !ok2 {
				return bad("section header must be [category: layer …]")
			}
			var err error
			if cat, err = ParseCategory(strings.TrimSpace(c)); err != nil {
				return bad("%v", err)
			}
			layers = layers[:0:0]
			for _, l := range strings.Fields(ls) {
				layer, ok := termLayers[l]
				if !ok {
					return bad("unknown layer %q (names, values, page)", l)
				}
				layers = append(layers, layer)
			}
			if len(layers) == 0 {
				return bad("a section needs at least one layer")
			}
			inSection = true
		default:
			if !inSection {
				return bad("term outside a section")
			}
			stem, plus := strings.HasSuffix(line, "*"), strings.HasSuffix(line, "+")
			word := strings.TrimRight(line, "*+")
			if strings.ContainsAny(word, "*+[]@") {
				return bad("%q: '*' and '+' only end a term", line)
			}
			key := Normalize(word)
			if key == "" {
				return bad("%q normalizes to nothing", line)
			}
			last := key[strings.LastIndexByte(key, ' ')+1:]
			if stem && len(last) < minStem {
				return bad("%q: a stem needs %d letters or more", line, minStem)
			}
			keys := []string{key}
			if plus {
				if len(endings) == 0 {
					return bad("%q: '+' needs an @endings line", line)
				}
				for _, e := range endings {
					keys = append(keys, key+e)
				}
			}
			for _, k := range keys {
				b.add(k, stem, cat, layers)
				if strings.IndexByte(k, ' ') >= 0 {
					// "medical condition" also as "medicalcondition"
					// (field names written without separators).
					b.add(strings.ReplaceAll(k, " ", ""), stem, cat, layers)
				}
			}
		}
	}
	return sc.Err()
}

// builtinTrie is built once from the embedded lists.
var builtinTrie = func() *trie {
	t, err := loadTrie()
	if err != nil {
		panic(err) // embedded data: TestTermListsParse catches it first
	}
	return t
}()

func loadTrie() (*trie, error) {
	b := newBuilder()
	for _, lang := range Languages {
		name := "terms/" + lang + ".txt"
		data, err := termFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidTerms, name, err)
		}
		if err := parseTerms(b, name, string(data)); err != nil {
			return nil, err
		}
	}
	return b.freeze(), nil
}
