package collect

import "time"

// timeLayouts are the ISO-8601 forms accepted after RFC 3339. Fractional
// seconds are accepted by time.Parse after the seconds field of any layout;
// layouts without a zone are read as UTC (ParseTimeIn: in its location).
var timeLayouts = [...]string{
	"2006-01-02T15:04:05",
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04:05Z07",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseTime parses the timestamp forms Segment clients send, e.g.
// "2026-11-26T10:00:00.123Z", "2026-11-26T10:00:00+01:00" or
// "2026-11-26T10:00:00".
func parseTime(s string) (time.Time, bool) { return ParseTimeIn(s, time.UTC) }

// ParseTimeIn parses the forms parseTime accepts, reading those without a
// zone in loc (an import's timestamp.timezone).
func ParseTimeIn(s string, loc *time.Location) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if len(s) < len("2006-01-02") || len(s) > 64 {
		return time.Time{}, false
	}
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
