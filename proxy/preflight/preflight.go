// Package preflight is the vocabulary of `vigie check`: named checks that
// each pass, warn or fail with a reason, gathered into a report that prints
// as a table. The checks themselves live with what they check (key custody
// in proxy/keyring, the configuration in proxy); this package only
// collects and prints them.
package preflight

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// ErrFailed is wrapped by Report.Err when at least one check failed.
var ErrFailed = errors.New("preflight: checks failed")

// Status is the outcome of one check.
type Status int

// Outcomes, from best to worst.
const (
	// Pass: the rule holds.
	Pass Status = iota
	// Warn: the rule is broken in a way that is tolerated outside
	// production (Vigie starts and logs it).
	Warn
	// Fail: the rule is broken; Vigie refuses to start.
	Fail
)

// String is "ok", "warn" or "FAIL".
func (s Status) String() string {
	switch s {
	case Pass:
		return "ok"
	case Warn:
		return "warn"
	default:
		return "FAIL"
	}
}

// Result is the outcome of one named check.
type Result struct {
	// Name of the check, short and stable (e.g. "master key source").
	Name string
	// Status is the outcome.
	Status Status
	// Detail says what was checked, or why it failed, in the operator's
	// terms. It never holds a secret.
	Detail string
}

// Report is the results of several checks, in the order they ran.
type Report []Result

// Failed returns the results that failed.
func (r Report) Failed() Report { return r.with(Fail) }

// Warnings returns the results that warned.
func (r Report) Warnings() Report { return r.with(Warn) }

func (r Report) with(s Status) Report {
	var out Report
	for _, res := range r {
		if res.Status == s {
			out = append(out, res)
		}
	}
	return out
}

// Err is nil when no check failed; otherwise an error wrapping ErrFailed
// that names every failed check and its reason.
func (r Report) Err() error {
	f := r.Failed()
	if len(f) == 0 {
		return nil
	}
	parts := make([]string, len(f))
	for i, res := range f {
		parts[i] = res.Name + ": " + res.Detail
	}
	return fmt.Errorf("%w: %s", ErrFailed, strings.Join(parts, "; "))
}

// Print writes the report as a table: check, status, detail.
func (r Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, res := range r {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", res.Name, res.Status, res.Detail)
	}
	return tw.Flush()
}
