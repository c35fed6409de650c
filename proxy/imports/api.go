package imports

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/vigie-dev/vigie/storage"
)

// RegisterAdmin registers the import routes on mux, each guarded by guard
// (the admin API's authentication).
func (s *Service) RegisterAdmin(mux *http.ServeMux, guard func(http.HandlerFunc) http.Handler) {
	mux.Handle("POST /admin/v1/imports", guard(s.handleCreate))
	mux.Handle("GET /admin/v1/imports", guard(s.handleList))
	mux.Handle("GET /admin/v1/imports/{id}", guard(s.handleGet))
	mux.Handle("DELETE /admin/v1/imports/{id}", guard(s.handleCancel))
	mux.Handle("GET /admin/v1/imports/{id}/errors", guard(s.handleErrors))
}

// apiError is the error body, the shape of the rest of the API.
type apiError struct {
	Success bool   `json:"success"`
	Code    string `json:"code"`
	Error   string `json:"error"`
	Field   string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, kind, field, msg string) {
	writeJSON(w, code, apiError{Code: kind, Error: msg, Field: field})
}

// writeMappingError answers 400 naming the mapping's field.
func writeMappingError(w http.ResponseWriter, err error) bool {
	var me *MappingError
	if !errors.As(err, &me) {
		return false
	}
	writeError(w, http.StatusBadRequest, "invalid_mapping", me.Field, me.Error())
	return true
}

// diskFull answers 503 disk_full as the rest of the API does.
func diskFull(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "60")
	writeError(w, http.StatusServiceUnavailable, "disk_full", "", "the server is out of disk space; the file was not stored, retry later")
}

// maxIdempotencyKey bounds an Idempotency-Key (Stripe's limit).
const maxIdempotencyKey = 255

// idemRecord is what an Idempotency-Key is stored with.
type idemRecord struct {
	Job  string `json:"job"`
	Hash string `json:"hash"`
}

// handleCreate is POST /admin/v1/imports: multipart/form-data with a
// "mapping" part (JSON) and a "file" part (CSV or NDJSON), query
// parameters site and dry_run, header Idempotency-Key.
func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Store.Disk().Full {
		diskFull(w)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKey || strings.ContainsFunc(key, func(c rune) bool { return c < 0x20 || c > 0x7e }) {
		writeError(w, http.StatusBadRequest, "invalid_idempotency_key", "Idempotency-Key", "at most 255 printable ASCII characters")
		return
	}
	if key != "" {
		s.mu.Lock()
		busy := s.inflight[key]
		s.inflight[key] = true
		s.mu.Unlock()
		if busy {
			writeError(w, http.StatusConflict, "idempotency_key_in_use", "Idempotency-Key", "a request with this Idempotency-Key is still being received; retry once it is answered")
			return
		}
		defer func() {
			s.mu.Lock()
			delete(s.inflight, key)
			s.mu.Unlock()
		}()
	}
	q := r.URL.Query()
	site := q.Get("site")
	if site == "" && len(s.cfg.Sites) == 1 {
		for id := range s.cfg.Sites {
			site = id
		}
	}
	if s.cfg.Sites[site] == nil {
		writeError(w, http.StatusBadRequest, "unknown_site", "site", "site: unknown or missing site id")
		return
	}
	dry := false
	if v := q.Get("dry_run"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_parameter", "dry_run", "dry_run: true or false")
			return
		}
		dry = b
	}
	up, code, kind, field, msg := s.receive(w, r)
	if up != nil {
		defer up.discard()
	}
	if code != 0 {
		if kind == "disk_full" {
			diskFull(w)
			return
		}
		writeError(w, code, kind, field, msg)
		return
	}
	p, err := compile(up.mapping, s.options(up.name))
	if err != nil {
		if !writeMappingError(w, err) {
			writeError(w, http.StatusBadRequest, "invalid_mapping", "mapping", "the mapping is not valid")
		}
		return
	}
	if pol := s.cfg.Sites[site].Policy(); !pol.Identifying.HasAny(p.purposes) {
		writeError(w, http.StatusBadRequest, "invalid_mapping", "purposes",
			"purposes: none of them makes an event pseudonymous on this site (consent.identifying)")
		return
	}
	if msg := up.check(p); msg != nil {
		if !writeMappingError(w, msg) {
			writeError(w, http.StatusBadRequest, "invalid_file", "file", msg.Error())
		}
		return
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, up.mapping)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%t\x00%s\x00", site, dry, up.sum)
	h.Write(compact.Bytes())
	bodyHash := hex.EncodeToString(h.Sum(nil))
	var idem *[2][]byte
	if key != "" {
		kh := sha256.Sum256([]byte(key))
		v, err := s.cfg.Store.ImportIdempotency(r.Context(), kh[:])
		switch {
		case err == nil:
			var ir idemRecord
			_ = json.Unmarshal(v, &ir)
			if ir.Hash != bodyHash {
				writeError(w, http.StatusUnprocessableEntity, "idempotency_key_reused", "Idempotency-Key",
					"this Idempotency-Key was used for another request (another file, mapping, site or dry_run)")
				return
			}
			rec, err := s.load(r.Context(), ir.Job)
			if err != nil {
				writeError(w, http.StatusInternalServerError, "import_failed", "", "the import job of this Idempotency-Key cannot be read")
				return
			}
			w.Header().Set("Idempotent-Replayed", "true")
			w.Header().Set("Location", "/admin/v1/imports/"+rec.ID)
			writeJSON(w, http.StatusAccepted, rec.view())
			return
		case !errors.Is(err, storage.ErrNotFound):
			writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "", "the import could not be recorded; retry later")
			return
		}
		v, _ = json.Marshal(idemRecord{Hash: bodyHash})
		idem = &[2][]byte{kh[:], v}
	}
	now := time.Now().UTC()
	id := ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy()).String()
	rec := &record{Job: Job{ID: id, Site: site, Status: StatusQueued, DryRun: dry, Format: p.format,
		File: FileInfo{Bytes: up.size, SHA256: up.sum}, Mapping: compact.Bytes(), CreatedAt: now, Node: s.cfg.Node}}
	if idem != nil {
		idem[1], _ = json.Marshal(idemRecord{Job: id, Hash: bodyHash})
	}
	if err := os.Rename(up.path, s.dataPath(id)); err != nil {
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "", "the file could not be kept; retry later")
		return
	}
	up.path = s.dataPath(id)
	if err := s.put(r.Context(), rec, nil, idem); err != nil {
		if errors.Is(err, storage.ErrDiskFull) {
			diskFull(w)
			return
		}
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "", "the import could not be recorded; retry later")
		return
	}
	up.path = "" // kept: the job owns it now
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if !closed {
		s.enqueue(id)
	}
	s.log.Info("import job queued", "job", id, "site", site, "dry_run", dry, "bytes", up.size)
	w.Header().Set("Location", "/admin/v1/imports/"+id)
	writeJSON(w, http.StatusAccepted, rec.view())
}

// upload is a received request: the mapping and the file, on disk.
type upload struct {
	mapping []byte
	name    string // the file part's name, for its format only
	path    string // "" once the job owns it
	size    int64
	sum     string
}

// discard removes the file unless a job owns it.
func (u *upload) discard() {
	if u.path != "" {
		_ = os.Remove(u.path)
	}
}

// compressed are the archive and compression formats an upload is
// refused in, by their magic bytes.
var compressed = []struct {
	name  string
	magic []byte
}{
	{"gzip-compressed", []byte{0x1f, 0x8b}},
	{"zip", []byte("PK\x03\x04")},
	{"zstd-compressed", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{"xz-compressed", []byte{0xfd, '7', 'z', 'X'}},
}

// check refuses a compressed file and reads the file's header (CSV)
// against p: a missing column is a *MappingError; an unreadable header
// another error.
func (u *upload) check(p *plan) error {
	f, err := os.Open(u.path)
	if err != nil {
		return errors.New("the file could not be read back")
	}
	defer f.Close()
	var magic [4]byte
	if n, _ := io.ReadFull(f, magic[:]); n >= 2 {
		for _, c := range compressed {
			if bytes.HasPrefix(magic[:n], c.magic) {
				return errors.New("file: a " + c.name + " file; send the " + p.format + " file itself, uncompressed")
			}
		}
	}
	if p.format != FormatCSV {
		return nil
	}
	head, _, err := readHeader(f, p)
	switch {
	case errors.Is(err, errHeaderTooLarge):
		return fmt.Errorf("file: the header row is larger than 1 MiB (%d bytes at most)", MaxRowBytes)
	case err != nil:
		return errors.New("file: no header row (the first row of a CSV file names its columns)")
	}
	_, err = headerIndex(p, head)
	return err
}

// receive reads the multipart body: the mapping into memory, the file to
// a temporary file in Dir, measuring free space as it goes and letting
// the upload take as long as it keeps sending. A problem is returned as
// status, code, field and message.
func (s *Service) receive(w http.ResponseWriter, r *http.Request) (up *upload, code int, kind, field, msg string) {
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil, http.StatusUnsupportedMediaType, "unsupported_content_encoding", "Content-Encoding",
			"send the body uncompressed (without Content-Encoding): the file is streamed to disk as sent"
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return nil, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type",
			"send multipart/form-data with a \"mapping\" part (JSON) and a \"file\" part (CSV or NDJSON)"
	}
	if r.ContentLength > s.cfg.MaxFileBytes+MaxMappingBytes+64<<10 {
		return nil, http.StatusRequestEntityTooLarge, "file_too_large", "file", fmt.Sprintf("the file is larger than %d bytes", s.cfg.MaxFileBytes)
	}
	rc := http.NewResponseController(w)
	extend := func() {
		_ = rc.SetReadDeadline(time.Now().Add(s.cfg.StallTimeout))
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.StallTimeout + 30*time.Second))
	}
	extend()
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, http.StatusBadRequest, "invalid_body", "", "the body is not multipart/form-data"
	}
	up = &upload{}
	gotFile := false
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return up, http.StatusBadRequest, "invalid_body", "", "the multipart body is malformed or was cut short"
		}
		switch part.FormName() {
		case "mapping":
			b, err := io.ReadAll(io.LimitReader(part, MaxMappingBytes+1))
			if err != nil {
				return up, http.StatusBadRequest, "invalid_body", "mapping", "the mapping part was cut short"
			}
			if len(b) > MaxMappingBytes {
				return up, http.StatusRequestEntityTooLarge, "mapping_too_large", "mapping", fmt.Sprintf("the mapping is larger than %d bytes", MaxMappingBytes)
			}
			up.mapping = b
		case "file":
			if gotFile {
				return up, http.StatusBadRequest, "invalid_body", "file", "one file per import"
			}
			gotFile = true
			up.name = filepath.Base(part.FileName())
			if code, kind, msg := s.saveFile(up, part, extend); code != 0 {
				return up, code, kind, "file", msg
			}
		default:
			return up, http.StatusBadRequest, "unknown_part", "", "unknown part: the parts are \"mapping\" and \"file\""
		}
	}
	switch {
	case up.mapping == nil:
		return up, http.StatusBadRequest, "missing_mapping", "mapping", "the \"mapping\" part is required (the mapping as JSON)"
	case !gotFile:
		return up, http.StatusBadRequest, "missing_file", "file", "the \"file\" part is required (CSV or NDJSON)"
	case up.size == 0:
		return up, http.StatusBadRequest, "empty_file", "file", "the file is empty"
	}
	return up, 0, "", "", ""
}

// diskCheckEvery is how many bytes of an upload are written between two
// free-space measurements.
const diskCheckEvery = 4 << 20

// saveFile streams part to a new file in Dir, hashing it, and keeps the
// store's free-space reserve.
func (s *Service) saveFile(up *upload, part io.Reader, extend func()) (int, string, string) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	up.path = filepath.Join(s.cfg.Dir, "upload-"+hex.EncodeToString(rnd[:])+partSuffix)
	f, err := os.OpenFile(up.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		up.path = ""
		s.log.Error("import upload not stored", "err", err)
		return http.StatusServiceUnavailable, "storage_unavailable", "the file could not be stored; retry later"
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 256<<10)
	reserve := s.cfg.Store.Disk().MinFreeBytes
	var sinceCheck int64
	for {
		n, rerr := part.Read(buf)
		if n > 0 {
			if up.size += int64(n); up.size > s.cfg.MaxFileBytes {
				return http.StatusRequestEntityTooLarge, "file_too_large", fmt.Sprintf("the file is larger than %d bytes", s.cfg.MaxFileBytes)
			}
			if sinceCheck += int64(n); sinceCheck >= diskCheckEvery || up.size == int64(n) {
				sinceCheck = 0
				extend()
				free, err := s.cfg.FreeSpace(s.cfg.Dir)
				if err == nil && free < reserve+2*diskCheckEvery {
					return http.StatusServiceUnavailable, "disk_full", ""
				}
			}
			h.Write(buf[:n])
			if _, err := f.Write(buf[:n]); err != nil {
				return http.StatusServiceUnavailable, "disk_full", ""
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return http.StatusBadRequest, "invalid_body", "the file part was cut short"
		}
	}
	if err := f.Close(); err != nil {
		return http.StatusServiceUnavailable, "disk_full", ""
	}
	up.sum = hex.EncodeToString(h.Sum(nil))
	return 0, "", ""
}

// handleGet is GET /admin/v1/imports/{id}: this node's job, or in
// cluster mode another node's view of its own.
func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	rec, err := s.load(r.Context(), r.PathValue("id"))
	if errors.Is(err, ErrNotFound) && s.cfg.Shared != nil {
		j, serr := s.cfg.Shared.Job(r.Context(), r.PathValue("id"))
		if serr == nil {
			writeJSON(w, http.StatusOK, j)
			return
		}
		err = serr
	}
	if err != nil {
		s.notFound(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec.view())
}

// onOtherNode answers, in cluster mode, a request only the node running
// job id can serve (its cancellation, its per-row errors): with that
// node's answer through Config.Remote, else (or for a request another node
// passed on) with 409 naming that node. It reports whether it answered.
func (s *Service) onOtherNode(w http.ResponseWriter, r *http.Request, id string) bool {
	if s.cfg.Shared == nil {
		return false
	}
	j, err := s.cfg.Shared.Job(r.Context(), id)
	if err != nil || j.Node == "" || j.Node == s.cfg.Node {
		return false
	}
	if s.cfg.Remote != nil && r.Context().Value(remoteKey{}) == nil {
		s.passOn(w, r, j.Node, id)
		return true
	}
	writeError(w, http.StatusConflict, "job_on_other_node", "id",
		"the import job runs on node "+j.Node+", which alone holds its file and its errors: send this request to that node")
	return true
}

// notFound answers a load error.
func (s *Service) notFound(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "id", "no such import job")
		return
	}
	writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "", "the import job cannot be read; retry later")
}

// handleCancel is DELETE /admin/v1/imports/{id}: cancel the job.
func (s *Service) handleCancel(w http.ResponseWriter, r *http.Request) {
	j, err := s.Cancel(r.Context(), r.PathValue("id"))
	if errors.Is(err, ErrNotFound) && s.onOtherNode(w, r, r.PathValue("id")) {
		return
	}
	switch {
	case errors.Is(err, ErrFinished):
		writeError(w, http.StatusConflict, "already_ended", "id", "the import job already ended ("+j.Status+")")
	case err != nil:
		s.notFound(w, err)
	default:
		writeJSON(w, http.StatusAccepted, j)
	}
}

// handleList is GET /admin/v1/imports[?site=]: the jobs, newest first.
func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	site := r.URL.Query().Get("site")
	var jobs []Job
	err := s.cfg.Store.ImportJobs(r.Context(), func(_ string, v []byte) error {
		rec, err := decodeRecord(v)
		if err == nil && (site == "" || rec.Site == site) {
			j := rec.view()
			j.Mapping = nil
			jobs = append(jobs, j)
		}
		return nil
	})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "", "the import jobs cannot be read; retry later")
		return
	}
	if s.cfg.Shared != nil {
		jobs = s.withOtherNodes(r.Context(), jobs, site)
	}
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].ID > jobs[b].ID })
	if len(jobs) > 100 {
		jobs = jobs[:100]
	}
	if jobs == nil {
		jobs = []Job{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"imports": jobs})
}

// handleErrors is GET /admin/v1/imports/{id}/errors?cursor=&limit=: the
// per-row errors in row order, 100 a page by default (at most 1000), the
// next page from next_cursor.
func (s *Service) handleErrors(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.load(r.Context(), id); err != nil {
		if !errors.Is(err, ErrNotFound) || !s.onOtherNode(w, r, id) {
			s.notFound(w, err)
		}
		return
	}
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "invalid_parameter", "limit", "limit: 1 to 1000")
			return
		}
		limit = n
	}
	var after uint64
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_parameter", "cursor", "cursor: the next_cursor of the previous page")
			return
		}
		after = n
	}
	stored, err := s.cfg.Store.ImportErrors(r.Context(), id, after, limit+1)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "", "the errors cannot be read; retry later")
		return
	}
	out := map[string]any{}
	if len(stored) > limit {
		stored = stored[:limit]
		out["next_cursor"] = strconv.FormatUint(stored[limit-1].Row, 10)
	}
	errs := make([]json.RawMessage, 0, len(stored))
	for _, e := range stored {
		errs = append(errs, e.Value)
	}
	out["errors"] = errs
	writeJSON(w, http.StatusOK, out)
}

// Job returns job id as the admin API shows it.
func (s *Service) Job(ctx context.Context, id string) (Job, error) {
	rec, err := s.load(ctx, id)
	if err != nil {
		return Job{}, err
	}
	return rec.view(), nil
}

// withOtherNodes adds to this node's jobs the views of the other nodes'
// ones (of site, when set). The other nodes' jobs are left out, with a
// warning, while they cannot be read.
func (s *Service) withOtherNodes(ctx context.Context, jobs []Job, site string) []Job {
	shared, err := s.cfg.Shared.Jobs(ctx)
	if err != nil {
		s.log.Warn("imports: the other nodes' jobs cannot be listed", "err", err)
		return jobs
	}
	have := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		have[j.ID] = true
	}
	for _, j := range shared {
		if !have[j.ID] && (site == "" || j.Site == site) {
			j.Mapping = nil
			jobs = append(jobs, j)
		}
	}
	return jobs
}
