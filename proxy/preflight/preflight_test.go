package preflight

import (
	"errors"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	cases := []struct {
		name    string
		rep     Report
		failed  []string
		warning int
	}{
		{"all pass", Report{{"a", Pass, "fine"}, {"b", Pass, ""}}, nil, 0},
		{"a warning does not fail", Report{{"a", Warn, "hmm"}, {"b", Pass, ""}}, nil, 1},
		{"failures are named", Report{{"a", Fail, "bad a"}, {"b", Warn, ""}, {"c", Fail, "bad c"}}, []string{"a: bad a", "c: bad c"}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.rep.Err()
			if (err != nil) != (len(c.failed) > 0) || len(c.rep.Warnings()) != c.warning {
				t.Fatalf("Err = %v, warnings %d", err, len(c.rep.Warnings()))
			}
			if err != nil && !errors.Is(err, ErrFailed) {
				t.Fatalf("Err does not wrap ErrFailed: %v", err)
			}
			for _, f := range c.failed {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("Err %q lacks %q", err, f)
				}
			}
			var b strings.Builder
			if err := c.rep.Print(&b); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(b.String()), "\n")
			if len(lines) != len(c.rep)+1 || !strings.HasPrefix(lines[0], "CHECK") {
				t.Fatalf("table:\n%s", b.String())
			}
			for i, r := range c.rep {
				if f := strings.Fields(lines[i+1]); f[0] != r.Name || f[1] != r.Status.String() {
					t.Errorf("row %d: %q", i, lines[i+1])
				}
			}
		})
	}
}
