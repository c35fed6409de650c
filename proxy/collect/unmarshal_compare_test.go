package collect

import (
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// This file keeps the alternative design (json.Unmarshal into tagged wire
// structs) as a benchmark so the choice of the token loop stays measured.

type wireID string

func (w *wireID) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	v, err := d.ReadValue()
	if err != nil {
		return err
	}
	if v.Kind() == '"' {
		b, err := jsontext.AppendUnquote(nil, v)
		*w = wireID(b)
		return err
	}
	*w = wireID(v)
	return nil
}

type wireTime time.Time

func (w *wireTime) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	var s string
	if err := json.UnmarshalDecode(d, &s); err != nil {
		return err
	}
	t, _ := parseTime(s)
	*w = wireTime(t)
	return nil
}

type wireMessage struct {
	Type              string   `json:"type"`
	MessageID         wireID   `json:"messageId"`
	AnonymousID       wireID   `json:"anonymousId"`
	UserID            wireID   `json:"userId"`
	GroupID           wireID   `json:"groupId"`
	PreviousID        wireID   `json:"previousId"`
	Event             string   `json:"event"`
	Name              string   `json:"name"`
	Category          string   `json:"category"`
	Timestamp         wireTime `json:"timestamp"`
	SentAt            wireTime `json:"sentAt"`
	OriginalTimestamp wireTime `json:"originalTimestamp"`
	WriteKey          string   `json:"writeKey"`
	Context           struct {
		IP        string `json:"ip"`
		UserAgent string `json:"userAgent"`
		Locale    string `json:"locale"`
		Timezone  string `json:"timezone"`
		Page      Page   `json:"page"`
		Campaign  struct {
			Name, Source, Medium, Term, Content string
		} `json:"campaign"`
		Library struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"library"`
		Consent jsontext.Value `json:"consent"`
		Traits  jsontext.Value `json:"traits"`
	} `json:"context"`
	Properties jsontext.Value `json:"properties"`
	Traits     jsontext.Value `json:"traits"`
}

type wireBatch struct {
	WriteKey string         `json:"writeKey"`
	SentAt   wireTime       `json:"sentAt"`
	Batch    []wireMessage  `json:"batch"`
	Context  jsontext.Value `json:"context"`
}

func BenchmarkDecodeBatchUnmarshal(b *testing.B) {
	body := sampleBatch(15)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var w wireBatch
		if err := json.Unmarshal(body, &w, json.MatchCaseInsensitiveNames(false)); err != nil || len(w.Batch) != 15 {
			b.Fatal(err)
		}
	}
}
