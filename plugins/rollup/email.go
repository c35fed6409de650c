package rollup

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/storage"
)

// The names of the e-mail events Vigie stores for recipients whose
// consent grants marketing (proxy/pipeline's EmailOpened and
// EmailClicked); other events carrying an e-mail (an ESP's "Email Sent")
// are counted as events only.
const (
	EmailOpenedEvent  = "Email Opened"
	EmailClickedEvent = "Email Link Clicked"
)

// E-mail kinds, as storage.EmailCount names them.
const (
	EmailOpen  = "open"
	EmailClick = "click"
)

// emailKind is the kind of an e-mail event by its name, "" for another.
func emailKind(name string) string {
	switch name {
	case EmailOpenedEvent:
		return EmailOpen
	case EmailClickedEvent:
		return EmailClick
	}
	return ""
}

// emailKey is the dimEmail value of one open or click: kind, class,
// campaign and link separated by NUL (none of them holds one: NULs are
// dropped). The link comes last, so a key cut to maxKeyLen only shortens
// the link.
func emailKey(kind, class, campaign, link string) string {
	clean := func(s string) string { return strings.ReplaceAll(s, "\x00", "") }
	return kind + "\x00" + clean(orNone(class)) + "\x00" + clean(campaign) + "\x00" + clean(link)
}

// EmailRow counts the opens or clicks of one campaign's link by one class
// of client.
type EmailRow struct {
	Campaign string `json:"campaign"`
	// Kind is "open" or "click".
	Kind string `json:"kind"`
	// Class is human, privacy_proxy, scanner or unknown ("(none)" when the
	// event had none).
	Class string `json:"class"`
	// Link is the clicked link (clicks only).
	Link  string `json:"link,omitempty"`
	Count uint64 `json:"count"`
}

// EmailStats are the e-mail events of a site over a period.
type EmailStats struct {
	Site string    `json:"site"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Rows are every (campaign, kind, class, link) counted, largest first.
	// Each stored hour and day keeps its TopK rows, so a row's count is
	// exact when it ranked within TopK in every bucket of the period, a
	// lower bound otherwise.
	Rows []EmailRow `json:"rows"`
	// Other counts the opens and clicks of rows a bucket did not keep.
	Other uint64 `json:"other"`
}

// Email returns the opens and clicks stored as events (the pseudonymous
// ones; campaign-level counters of the others are storage.EmailCounts)
// of site over [from, to), rounded out to whole UTC hours like Overview,
// from the same buckets: it never scans events.
func (a *Aggregator) Email(ctx context.Context, site string, from, to time.Time) (EmailStats, error) {
	if site == "" || len(site) > 255 || strings.IndexByte(site, 0) >= 0 {
		return EmailStats{}, fmt.Errorf("%w: site must be 1 to 255 bytes without NUL", ErrInvalidQuery)
	}
	f, t, err := hourRange(from, to)
	if err != nil {
		return EmailStats{}, err
	}
	ac, _, err := a.period(ctx, site, f, t, true, true)
	if err != nil {
		return EmailStats{}, err
	}
	st := EmailStats{Site: site, From: indexStart(storage.RollupHour, f), To: indexStart(storage.RollupHour, t), Rows: []EmailRow{}, Other: ac.other[dimEmail]}
	for k, n := range ac.dims[dimEmail] {
		parts := strings.SplitN(k, "\x00", 4)
		if len(parts) != 4 {
			st.Other += n
			continue
		}
		st.Rows = append(st.Rows, EmailRow{Kind: parts[0], Class: parts[1], Campaign: parts[2], Link: parts[3], Count: n})
	}
	slices.SortFunc(st.Rows, func(x, y EmailRow) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), strings.Compare(x.Campaign, y.Campaign),
			strings.Compare(x.Kind, y.Kind), strings.Compare(x.Class, y.Class), strings.Compare(x.Link, y.Link))
	})
	return st, nil
}
