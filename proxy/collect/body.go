package collect

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
)

// BodyLimits bounds the decompressed size of request bodies. The zero
// value uses the Segment limits.
type BodyLimits struct {
	// MaxBody is the largest accepted decompressed body in bytes. Zero
	// means MaxBatchBytes (500 KB) for batch routes and MaxEventBytes
	// (32 KB) for single-event routes.
	MaxBody int64
}

// For returns the limit to pass to ReadBody for a batch or single-event
// route.
func (l BodyLimits) For(batch bool) int64 {
	switch {
	case l.MaxBody > 0:
		return l.MaxBody
	case batch:
		return MaxBatchBytes
	default:
		return MaxEventBytes
	}
}

// maxPooledBuffer is the largest buffer capacity returned to the pool.
const maxPooledBuffer = 2 << 20

var (
	bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	gzipPool   sync.Pool // *gzip.Reader
	flatePool  sync.Pool // io.ReadCloser implementing flate.Resetter
	zlibPool   sync.Pool // io.ReadCloser implementing zlib.Resetter
)

func noRelease() {}

func getBuffer() *bytes.Buffer {
	b := bufferPool.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuffer {
		bufferPool.Put(b)
	}
}

// ReadBody reads r.Body, which is always JSON whatever the Content-Type
// says. It honours Content-Encoding gzip (or x-gzip) and deflate (zlib or
// raw), and recognises a gzip body by its magic bytes when the header is
// missing. It never holds more than max+1 decompressed bytes: beyond max it
// stops inflating and returns ErrTooLarge (so a gzip bomb costs at most
// max+1 bytes of output). Other encodings give ErrUnsupportedEncoding, a
// corrupt compressed stream ErrCorruptEncoding (an http.MaxBytesReader limit
// hit upstream also gives ErrTooLarge). A read error of the connection is
// classified, never passed on (its text names socket addresses): a read
// deadline gives ErrBodyTimeout, a body shorter than its Content-Length or
// last chunk ErrIncompleteBody, anything else ErrUnreadableBody. max <= 0
// means MaxBatchBytes.
//
// body lives in a pooled buffer: call release (never nil) once body and
// anything aliasing it are no longer used. Decoded Messages do not alias it.
func ReadBody(r *http.Request, max int64) (body []byte, release func(), err error) {
	if max <= 0 {
		max = MaxBatchBytes
	}
	enc, err := encodingOf(r.Header.Get("Content-Encoding"))
	if err != nil {
		return nil, noRelease, err
	}
	// A compressed body of JSON is smaller than its content; allow some
	// slack for incompressible data and framing.
	rawMax := max
	if enc != encIdentity {
		rawMax = max + max/16 + 1024
	}
	if r.ContentLength > rawMax && enc == encIdentity {
		return nil, noRelease, fail(ErrTooLarge, "body is %d bytes, larger than the %d-byte limit", r.ContentLength, max)
	}
	raw := getBuffer()
	if r.Body != nil {
		if _, err := raw.ReadFrom(io.LimitReader(r.Body, rawMax+1)); err != nil {
			got := raw.Len()
			putBuffer(raw)
			return nil, noRelease, readError(err, r.ContentLength, got)
		}
	}
	if int64(raw.Len()) > rawMax {
		putBuffer(raw)
		return nil, noRelease, fail(ErrTooLarge, "body is larger than the %d-byte limit", max)
	}
	if enc == encIdentity && isGzip(raw.Bytes()) {
		enc = encGzip
	}
	if enc == encIdentity {
		return raw.Bytes(), func() { putBuffer(raw) }, nil
	}
	out := getBuffer()
	err = decompress(out, raw.Bytes(), enc, max, nil)
	putBuffer(raw)
	if err != nil {
		putBuffer(out)
		return nil, noRelease, err
	}
	return out.Bytes(), func() { putBuffer(out) }, nil
}

// readError classifies an error reading the request body. declared is the
// request's Content-Length (-1 when chunked), got the bytes read before it.
func readError(err error, declared int64, got int) error {
	var (
		mbe *http.MaxBytesError
		ne  net.Error
	)
	switch {
	case errors.As(err, &mbe):
		return fail(ErrTooLarge, "body is larger than the %d-byte limit", mbe.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ErrBodyTimeout
	case errors.Is(err, io.ErrUnexpectedEOF) && declared > 0:
		return fail(ErrIncompleteBody, "body ended after %d of the %d bytes its Content-Length announced", got, declared)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fail(ErrIncompleteBody, "chunked body ended before its last chunk")
	default:
		return ErrUnreadableBody
	}
}

type encoding uint8

const (
	encIdentity encoding = iota
	encGzip
	encDeflate
)

func encodingOf(h string) (encoding, error) {
	h = strings.TrimSpace(h)
	switch {
	case h == "" || strings.EqualFold(h, "identity"):
		return encIdentity, nil
	case strings.EqualFold(h, "gzip") || strings.EqualFold(h, "x-gzip"):
		return encGzip, nil
	case strings.EqualFold(h, "deflate"):
		return encDeflate, nil
	default:
		return 0, ErrUnsupportedEncoding
	}
}

func isGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

// isZlib reports whether b starts with a zlib header (RFC 1950): deflate
// method, 32 KB window at most, and a valid header checksum.
func isZlib(b []byte) bool {
	return len(b) >= 2 && b[0]&0x0f == 8 && b[0]>>4 <= 7 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0
}

// decompress inflates src into dst, stopping after max+1 bytes of output.
// wrap, if not nil, wraps the decompressing reader (tests count bytes).
func decompress(dst *bytes.Buffer, src []byte, enc encoding, max int64, wrap func(io.Reader) io.Reader) error {
	in := bytes.NewReader(src)
	var (
		zr      io.Reader
		release func()
	)
	switch {
	case enc == encGzip:
		g, _ := gzipPool.Get().(*gzip.Reader)
		if g == nil {
			g = new(gzip.Reader)
		}
		if err := g.Reset(in); err != nil {
			return corrupt(err)
		}
		zr, release = g, func() { gzipPool.Put(g) }
	case isZlib(src):
		z, _ := zlibPool.Get().(io.ReadCloser)
		if z == nil {
			var err error
			if z, err = zlib.NewReader(in); err != nil {
				return corrupt(err)
			}
		} else if err := z.(zlib.Resetter).Reset(in, nil); err != nil {
			zlibPool.Put(z)
			return corrupt(err)
		}
		zr, release = z, func() { zlibPool.Put(z) }
	default: // raw deflate, as some clients send for "deflate"
		f, _ := flatePool.Get().(io.ReadCloser)
		if f == nil {
			f = flate.NewReader(in)
		} else if err := f.(flate.Resetter).Reset(in, nil); err != nil {
			flatePool.Put(f)
			return corrupt(err)
		}
		zr, release = f, func() { flatePool.Put(f) }
	}
	defer release()
	if wrap != nil {
		zr = wrap(zr)
	}
	n, err := dst.ReadFrom(io.LimitReader(zr, max+1))
	if n > max {
		return fail(ErrTooLarge, "decompressed body is larger than the %d-byte limit", max)
	}
	if err != nil {
		return corrupt(err)
	}
	return nil
}

// corrupt reports a compressed stream that does not inflate; the
// decompressor's own error is not kept (it adds nothing for the client).
func corrupt(error) error { return ErrCorruptEncoding }
