package email

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// TokenColumn is the column of TokensCommand's output that holds each
// recipient's value: import it into the ESP as a contact attribute.
const TokenColumn = "vigie_token"

// PreferenceColumn is the column of TokensCommand's output that holds each
// recipient's preference token (TokensOptions.Preferences): import it as a
// second contact attribute, for the List-Unsubscribe header of merge-tag
// campaigns.
const PreferenceColumn = "vigie_preference"

// DefaultUserIDColumn is the header TokensCommand looks for in a CSV input.
const DefaultUserIDColumn = "user_id"

// TokensBatch is the most user ids TokensCommand hands Issue at once.
const TokensBatch = 1000

// maxInputErrors bounds the line errors TokensCommand reports.
const maxInputErrors = 20

// TokensOptions says how TokensCommand reads its input and makes values.
type TokensOptions struct {
	// Column is the header of the user id column in a CSV input, matched
	// without regard to case or surrounding spaces. Default
	// DefaultUserIDColumn.
	Column string
	// Issue returns the recipient value of each user id, in order (at most
	// TokensBatch ids per call). Required.
	Issue func(ctx context.Context, userIDs []string) ([]string, error)
	// Preferences, when set, returns each user id's preference token
	// (Signer.SignPreference), in order, called after Issue with the same
	// ids; the output then has a PreferenceColumn too.
	Preferences func(ctx context.Context, userIDs []string) ([]string, error)
}

// UserIDProblem says what is wrong with a recipient's user id wherever
// Vigie takes one for e-mail (rewrite, tokens), or "" if nothing is: it
// must be valid UTF-8 and not blank. The id is used as it is, not trimmed:
// it must be what identify's userId carries.
func UserIDProblem(id string) string {
	switch {
	case !utf8.ValidString(id):
		return "not valid UTF-8"
	case strings.TrimSpace(id) == "":
		return "empty user id"
	}
	return ""
}

// TokensCommand reads recipients from in and writes a CSV of their
// recipient values to out. It backs `vigie email tokens`.
//
// The input is either one user id per line (CSV quoting allowed), written
// back as user_id,vigie_token; or a CSV whose header names the user id
// column (opt.Column), written back with every input column kept and a
// vigie_token column added (or refreshed if it is there), so an ESP export
// with e-mail addresses can be imported again as it is. A UTF-8 byte order
// mark is ignored. Input with a line that is not UTF-8, has an empty user
// id or the wrong number of fields is refused as a whole (ErrBadInput,
// naming the lines), and nothing is written.
func TokensCommand(ctx context.Context, in io.Reader, out io.Writer, opt TokensOptions) error {
	if opt.Issue == nil {
		return fmt.Errorf("%w: tokens need an Issue function", ErrConfig)
	}
	if opt.Column == "" {
		opt.Column = DefaultUserIDColumn
	}
	tab, err := readRecipients(in, opt.Column)
	if err != nil {
		return err
	}
	tokens := make([]string, 0, len(tab.rows))
	var prefs []string
	for start := 0; start < len(tab.rows); start += TokensBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(start+TokensBatch, len(tab.rows))
		ids := make([]string, 0, end-start)
		for _, row := range tab.rows[start:end] {
			ids = append(ids, row[tab.id])
		}
		got, err := opt.Issue(ctx, ids)
		if err != nil {
			return err
		}
		if len(got) != len(ids) {
			return fmt.Errorf("email: %d recipient values for %d user ids", len(got), len(ids))
		}
		tokens = append(tokens, got...)
		if opt.Preferences != nil {
			p, err := opt.Preferences(ctx, ids)
			if err != nil {
				return err
			}
			if len(p) != len(ids) {
				return fmt.Errorf("email: %d preference tokens for %d user ids", len(p), len(ids))
			}
			prefs = append(prefs, p...)
		}
	}
	w := csv.NewWriter(out)
	header := tab.header[:len(tab.header):len(tab.header)]
	column := func(name string) int {
		for i, h := range header {
			if strings.EqualFold(strings.TrimSpace(h), name) {
				return i
			}
		}
		header = append(header, name)
		return -1
	}
	tokCol := column(TokenColumn)
	prefCol := -2 // no preference column
	if opt.Preferences != nil {
		prefCol = column(PreferenceColumn)
	}
	_ = w.Write(header)
	for i, row := range tab.rows {
		if tokCol >= 0 {
			row[tokCol] = tokens[i]
		} else {
			row = append(row, tokens[i])
		}
		switch {
		case prefCol >= 0:
			row[prefCol] = prefs[i]
		case prefCol == -1:
			row = append(row, prefs[i])
		}
		_ = w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("email: writing output: %w", err)
	}
	return nil
}

// recipientTable is TokensCommand's parsed input.
type recipientTable struct {
	header []string
	id     int // index of the user id column
	rows   [][]string
}

// readRecipients parses and checks the whole input (see TokensCommand).
func readRecipients(in io.Reader, column string) (recipientTable, error) {
	r := csv.NewReader(in)
	r.FieldsPerRecord = -1
	var (
		tab    recipientTable
		errs   []string
		nerrs  int
		plain  bool
		first  = true
		fields int
	)
	fail := func(line int, msg string) {
		if nerrs++; nerrs <= maxInputErrors {
			errs = append(errs, fmt.Sprintf("line %d: %s", line, msg))
		}
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			fail(pe.StartLine, "not valid CSV ("+pe.Err.Error()+")")
			if nerrs > maxInputErrors {
				break
			}
			continue
		}
		if err != nil {
			return tab, fmt.Errorf("email: reading input: %w", err)
		}
		line, _ := r.FieldPos(0)
		if first {
			first = false
			rec[0] = strings.TrimPrefix(rec[0], "\ufeff")
			tab.id = -1
			for i, f := range rec {
				if strings.EqualFold(strings.TrimSpace(f), column) {
					tab.id = i
					break
				}
			}
			switch {
			case tab.id >= 0:
				tab.header, fields = rec, len(rec)
				continue
			case len(rec) == 1:
				plain, fields = true, 1
				tab.header = []string{DefaultUserIDColumn}
				tab.id = 0
			default:
				return tab, fmt.Errorf("%w: line %d: the header has no %q column; give one user id per line, or name the user id column", ErrBadInput, line, column)
			}
		}
		if len(rec) != fields {
			if plain {
				fail(line, fmt.Sprintf("%d fields; give one user id per line (quote ids that hold a comma)", len(rec)))
			} else {
				fail(line, fmt.Sprintf("%d fields, the header has %d", len(rec), fields))
			}
			continue
		}
		bad := false
		for _, f := range rec {
			if !utf8.ValidString(f) {
				fail(line, "not valid UTF-8")
				bad = true
				break
			}
		}
		if bad {
			continue
		}
		if p := UserIDProblem(rec[tab.id]); p != "" {
			fail(line, p)
			continue
		}
		tab.rows = append(tab.rows, rec)
	}
	if nerrs > 0 {
		if nerrs > maxInputErrors {
			errs = append(errs, fmt.Sprintf("and %d more", nerrs-maxInputErrors))
		}
		return tab, fmt.Errorf("%w:\n%s", ErrBadInput, strings.Join(errs, "\n"))
	}
	if len(tab.rows) == 0 {
		return tab, fmt.Errorf("%w: no user ids in the input", ErrBadInput)
	}
	return tab, nil
}
