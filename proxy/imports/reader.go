package imports

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// MaxRowBytes bounds one row of a file: memory stays bounded whatever the
// file holds. A longer NDJSON line is a failed row; a longer CSV record
// stops the job (a CSV reader cannot find the next record without reading
// this one).
const MaxRowBytes = 1 << 20

// Reasons a row cannot be read.
const (
	reasonMalformed   = "malformed_row"
	reasonFieldCount  = "field_count"
	reasonRowTooLarge = "row_too_large"
	reasonNotObject   = "not_an_object"
	reasonUnsupported = "unsupported_value"
	reasonEncoding    = "invalid_utf8"
)

// rowSource reads the rows of a file, streaming.
type rowSource interface {
	// next reads the next row into vals (one value per plan column, ""
	// when absent). A row that cannot be read gives a reason (and the
	// mapping field of the column concerned, if any) and nil error; the
	// end of the file is io.EOF; anything else stops the job.
	next(vals []string) (reason, field string, err error)
	// offset is the byte offset just after the last row read.
	offset() int64
}

// utf8BOM is the byte order mark spreadsheets write before UTF-8 CSV.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// countingReader counts the bytes handed to a reader above it and refuses
// to hand out more than limit bytes past the last mark: a CSV record
// larger than MaxRowBytes stops reading before it fills memory.
type countingReader struct {
	r     io.Reader
	n     int64 // bytes handed out
	mark  int64
	limit int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n-c.mark > c.limit {
		return 0, errRowTooLarge
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// csvSource reads CSV with encoding/csv, reusing its record.
type csvSource struct {
	r    *csv.Reader
	cr   *countingReader
	base int64 // file offset the reader started at
	idx  []int // header position of each plan column (-1: absent)
	n    int   // header width
	off  int64
}

// readHeader reads the header of a CSV file from f (at offset 0) and
// returns its column names and the offset just after it.
func readHeader(f io.ReadSeeker, p *plan) ([]string, int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, err
	}
	lr := &io.LimitedReader{R: f, N: MaxRowBytes}
	br := bufio.NewReader(lr)
	skip := int64(0)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(3)
		skip = 3
	}
	r := csv.NewReader(br)
	r.Comma = p.delimiter
	r.FieldsPerRecord = -1
	head, err := r.Read()
	switch {
	case err != nil && lr.N == 0, err == nil && skip+r.InputOffset() >= MaxRowBytes:
		// The header runs to the limit: the rest of it would be read as
		// data rows.
		return nil, 0, errHeaderTooLarge
	case err != nil:
		return nil, 0, err
	}
	out := make([]string, len(head))
	for i, h := range head {
		out[i] = strings.TrimSpace(h)
	}
	return out, skip + r.InputOffset(), nil
}

// headerIndex maps each plan column to its header position; a column the
// header lacks is a *MappingError naming the mapping field.
func headerIndex(p *plan, head []string) ([]int, error) {
	idx := make([]int, len(p.columns))
	for i, c := range p.columns {
		idx[i] = -1
		for j, h := range head {
			if h == c {
				idx[i] = j
				break
			}
		}
		if idx[i] < 0 {
			return nil, bad(p.colPaths[i], "no such column in the file's header")
		}
	}
	return idx, nil
}

// newCSVSource reads the data rows of f from offset (0: after the header).
func newCSVSource(f io.ReadSeeker, p *plan, offset int64) (*csvSource, error) {
	head, end, err := readHeader(f, p)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	idx, err := headerIndex(p, head)
	if err != nil {
		return nil, err
	}
	offset = max(offset, end)
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	cr := &countingReader{r: f, limit: MaxRowBytes}
	r := csv.NewReader(cr)
	r.Comma = p.delimiter
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	return &csvSource{r: r, cr: cr, base: offset, idx: idx, n: len(head), off: offset}, nil
}

func (s *csvSource) next(vals []string) (string, string, error) {
	rec, err := s.r.Read()
	s.off = s.base + s.r.InputOffset()
	s.cr.mark = s.r.InputOffset()
	var pe *csv.ParseError
	switch {
	case errors.Is(err, errRowTooLarge):
		return "", "", errRowTooLarge
	case errors.As(err, &pe) && !errors.Is(pe.Err, csv.ErrFieldCount):
		return reasonMalformed, "", nil
	case err != nil:
		return "", "", err
	}
	if len(rec) != s.n {
		return reasonFieldCount, "", nil
	}
	for i, j := range s.idx {
		v := rec[j]
		if !utf8.ValidString(v) {
			return reasonEncoding, "", nil
		}
		vals[i] = strings.Clone(strings.TrimSpace(v))
	}
	return "", "", nil
}

func (s *csvSource) offset() int64 { return s.off }

// ndjsonSource reads one JSON object per line.
type ndjsonSource struct {
	br    *bufio.Reader
	off   int64
	line  []byte
	dec   jsontext.Decoder
	rd    bytes.Reader
	index map[string]int // column name → plan column
	paths []string
}

// newNDJSONSource reads the rows of f from offset.
func newNDJSONSource(f io.ReadSeeker, p *plan, offset int64) (*ndjsonSource, error) {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	s := &ndjsonSource{br: bufio.NewReaderSize(f, 64<<10), off: offset, index: map[string]int{}, paths: p.colPaths}
	for i, c := range p.columns {
		s.index[c] = i
	}
	if offset == 0 {
		if b, err := s.br.Peek(3); err == nil && bytes.Equal(b, utf8BOM) {
			_, _ = s.br.Discard(3)
			s.off = 3
		}
	}
	return s, nil
}

// readLine reads the next line (without its end) into s.line; too long is
// true when it was longer than MaxRowBytes (and then skipped).
func (s *ndjsonSource) readLine() (tooLong bool, err error) {
	s.line = s.line[:0]
	for {
		chunk, err := s.br.ReadSlice('\n')
		s.off += int64(len(chunk))
		if !tooLong {
			if len(s.line)+len(chunk) > MaxRowBytes {
				tooLong, s.line = true, s.line[:0]
			} else {
				s.line = append(s.line, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && (len(s.line) > 0 || tooLong):
			return tooLong, nil
		case err != nil:
			return false, err
		}
		return tooLong, nil
	}
}

func (s *ndjsonSource) next(vals []string) (string, string, error) {
	for {
		tooLong, err := s.readLine()
		if err != nil {
			return "", "", err
		}
		if tooLong {
			return reasonRowTooLarge, "", nil
		}
		if len(bytes.TrimSpace(s.line)) > 0 {
			break
		}
	}
	clear(vals)
	s.rd.Reset(s.line)
	s.dec.Reset(&s.rd)
	tok, err := s.dec.ReadToken()
	if err != nil {
		return reasonMalformed, "", nil
	}
	if tok.Kind() != '{' {
		return reasonNotObject, "", nil
	}
	for s.dec.PeekKind() != '}' {
		name, err := s.dec.ReadToken()
		if err != nil {
			return reasonMalformed, "", nil
		}
		i, used := s.index[name.String()]
		if !used {
			if err := s.dec.SkipValue(); err != nil {
				return reasonMalformed, "", nil
			}
			continue
		}
		switch s.dec.PeekKind() {
		case '{', '[':
			if err := s.dec.SkipValue(); err != nil {
				return reasonMalformed, "", nil
			}
			return reasonUnsupported, s.paths[i], nil
		}
		v, err := s.dec.ReadToken()
		if err != nil {
			return reasonMalformed, "", nil
		}
		switch v.Kind() {
		case 'n':
			vals[i] = ""
		case '"':
			vals[i] = strings.TrimSpace(v.String())
		default: // numbers and booleans, as written
			vals[i] = v.String()
		}
	}
	if _, err := s.dec.ReadToken(); err != nil {
		return reasonMalformed, "", nil
	}
	if _, err := s.dec.ReadToken(); !errors.Is(err, io.EOF) {
		return reasonMalformed, "", nil // something after the object
	}
	return "", "", nil
}

func (s *ndjsonSource) offset() int64 { return s.off }
