package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/proxy/access"
)

//go:embed templates/*.html
var templateFS embed.FS

// pageNames are the templates rendered inside the layout.
var pageNames = []string{"overview", "live", "sites", "site", "segments", "members", "plugins", "email",
	"destinations", "response", "privacy", "request", "sensitive", "error"}

type pages struct {
	byName map[string]*template.Template
	signin *template.Template
}

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"ms": func(ms int64) string {
		if ms == 0 {
			return ""
		}
		return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05")
	},
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12] + "…"
		}
		return s
	},
	"join": strings.Join,
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, fmt.Errorf("dict: odd number of arguments")
		}
		m := make(map[string]any, len(kv)/2)
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"pct": func(f float64) string { return strconv.FormatFloat(math.Round(f*1000)/10, 'f', -1, 64) + " %" },
	"share": func(n, total uint64) string {
		if total == 0 {
			return "0 %"
		}
		return strconv.FormatFloat(math.Round(float64(n)*1000/float64(total))/10, 'f', -1, 64) + " %"
	},
	"scrubbed": func(m map[string]int) string {
		if len(m) == 0 {
			return ""
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s ×%d", k, m[k])
		}
		return b.String()
	},
	"n":   groupDigits,
	"add": func(a, b uint64) uint64 { return a + b },
	// outcomeClass is the tag class of a decision outcome.
	"outcomeClass": func(o string) string {
		if o == "drop" {
			return "dropped"
		}
		return o
	},
	"dur": func(d time.Duration) string {
		if d < time.Millisecond {
			return "under 1ms"
		}
		if d < time.Second {
			return d.Round(time.Millisecond).String()
		}
		return d.Round(100 * time.Millisecond).String()
	},
	"days": func(d time.Duration) string {
		return strconv.Itoa(int(d.Hours()/24)) + " days"
	},
	// objected is how many subjects objected to purpose.
	"objected": func(st LedgerStats, purpose string) uint64 {
		for _, p := range st.Objected {
			if p.Purpose == purpose {
				return p.Count
			}
		}
		return 0
	},
	"until": func(t time.Time) string {
		d := time.Until(t).Round(time.Hour)
		if d < 0 {
			return "overdue by " + strings.TrimSuffix((-d).String(), "0m0s")
		}
		days := int(d.Hours()) / 24
		return strconv.Itoa(days) + " d " + strconv.Itoa(int(d.Hours())%24) + " h left"
	},
}

// groupDigits writes n with thin spaces between groups of three digits
// (12 345 678), as numbers are written in English and French alike.
func groupDigits(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 4 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	return b.String()
}

func parsePages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}}
	for _, n := range pageNames {
		t, err := template.New(n).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, err
		}
		p.byName[n] = t
	}
	t, err := template.New("signin").Funcs(funcs).ParseFS(templateFS, "templates/signin.html")
	if err != nil {
		return nil, err
	}
	p.signin = t
	return p, nil
}

// navItem is one entry of the navigation.
type navItem struct {
	Name, Label, Path string
}

// nav is the navigation, in order; an entry shows only to the roles its
// page's pattern allows.
var nav = []navItem{
	{"overview", "Overview", "/console/overview"},
	{"live", "Live events", "/console/live"},
	{"segments", "Segments", "/console/segments"},
	{"email", "E-mail", "/console/email"},
	{"response", "Responses", "/console/response"},
	{"destinations", "Destinations", "/console/destinations"},
	{"plugins", "Plugins", "/console/plugins"},
	{"privacy", "Privacy", "/console/privacy"},
	{"sensitive", "Sensitive data", "/console/sensitive"},
	{"sites", "Sites", "/console/sites"},
}

// view is what every page's template gets.
type view struct {
	Title    string
	Page     string
	ID       access.Identity
	CSRF     string
	Nav      []navItem
	Sites    []Site
	Site     string
	Personal bool
	Demo     string
	Message  string
	Query    string
	Data     any
}

// securityHeaders are set on every console answer: nothing from elsewhere,
// no inline script, never framed, never cached.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// render writes the page name with v, status code.
func (c *Console) render(w http.ResponseWriter, code int, name string, v *view) {
	t := c.pages.byName[name]
	if name == "signin" {
		t = c.pages.signin
	}
	var buf bytes.Buffer
	root := "layout"
	if name == "signin" {
		root = "signin"
	}
	if err := t.ExecuteTemplate(&buf, root, v); err != nil {
		c.log.Error("console page failed", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// renderFragment writes one named template of page name (a partial
// refresh).
func (c *Console) renderFragment(w http.ResponseWriter, name, fragment string, v *view) {
	var buf bytes.Buffer
	if err := c.pages.byName[name].ExecuteTemplate(&buf, fragment, v); err != nil {
		c.log.Error("console fragment failed", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// assetFS is the embedded static files (assets/dist).
//
//go:embed assets/dist/console.js assets/dist/console.css
var assetFS embed.FS

func distFS() fs.FS {
	sub, _ := fs.Sub(assetFS, "assets/dist")
	return sub
}

// writeJSON answers v as JSON, uncached.
func writeJSON(w http.ResponseWriter, code int, v any) {
	securityHeaders(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
