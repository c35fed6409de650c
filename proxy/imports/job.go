package imports

import (
	"encoding/json"
	"math"
	"time"
)

// Job statuses.
const (
	StatusQueued   = "queued"
	StatusRunning  = "running"
	StatusDone     = "done"
	StatusFailed   = "failed"
	StatusCanceled = "canceled"
)

// Job is an import job as the admin API shows it. It names no person and
// holds no value of the file: counts, reasons and the mapping.
type Job struct {
	// ID is the job id (a ULID).
	ID string `json:"id"`
	// Site the rows are imported into.
	Site string `json:"site"`
	// Status is queued, running, done, failed or canceled.
	Status string `json:"status"`
	// DryRun: the rows are checked and counted, nothing is stored.
	DryRun bool `json:"dry_run"`
	// Format of the file (csv, ndjson).
	Format string `json:"format"`
	// File describes the uploaded file.
	File FileInfo `json:"file"`
	// Mapping is the mapping as sent.
	Mapping json.RawMessage `json:"mapping"`
	// CreatedAt, StartedAt (first start) and FinishedAt.
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// Rows counts the rows read, accepted, skipped and failed.
	Rows Rows `json:"rows"`
	// SkippedByReason and FailedByReason split Rows.Skipped and
	// Rows.Failed by reason code.
	SkippedByReason map[string]int64 `json:"skipped_by_reason"`
	FailedByReason  map[string]int64 `json:"failed_by_reason"`
	// Errors says how many per-row errors are stored (at most MaxErrors;
	// duplicates are counted, not listed).
	Errors ErrorsInfo `json:"errors"`
	// Progress is where the job is.
	Progress Progress `json:"progress"`
	// Error says why a failed job failed, in the client's terms.
	Error string `json:"error,omitempty"`
	// Node is the cluster node that received the file and runs the job
	// (cluster mode only): its cancellation and per-row errors are served
	// there.
	Node string `json:"node,omitempty"`
}

// FileInfo describes an uploaded file (never its name, which may name a
// person).
type FileInfo struct {
	// Bytes is its size.
	Bytes int64 `json:"bytes"`
	// SHA256 is its hex SHA-256, to tell which file was imported.
	SHA256 string `json:"sha256"`
}

// Rows are a job's row counts: Read = Accepted + Skipped + Failed.
type Rows struct {
	Read     int64 `json:"read"`
	Accepted int64 `json:"accepted"`
	Skipped  int64 `json:"skipped"`
	Failed   int64 `json:"failed"`
}

// ErrorsInfo counts a job's stored per-row errors.
type ErrorsInfo struct {
	Stored    int64 `json:"stored"`
	Truncated bool  `json:"truncated"`
}

// Progress is a job's progress through its file.
type Progress struct {
	// BytesDone of BytesTotal have been read.
	BytesDone  int64 `json:"bytes_done"`
	BytesTotal int64 `json:"bytes_total"`
	// Percent is BytesDone / BytesTotal × 100.
	Percent float64 `json:"percent"`
	// RowsPerSecond is the rate while running.
	RowsPerSecond float64 `json:"rows_per_second"`
	// ETASeconds is the estimated time left while running (0 otherwise).
	ETASeconds float64 `json:"eta_seconds"`
	// Waiting says why a running job waits ("outbox": the event backlog
	// is high, "disk_full"), empty when it does not.
	Waiting string `json:"waiting,omitempty"`
}

// MaxErrors bounds the per-row errors stored for one job; later ones are
// counted only.
const MaxErrors = 10_000

// record is a job as stored: the Job and where the worker is.
type record struct {
	Job
	// Offset is the file offset after the last committed row; Row the
	// number of rows read up to there.
	Offset int64  `json:"offset"`
	Row    uint64 `json:"row"`
	// Committing is set while a batch is being appended: after a restart
	// the duplicates of the next batch are this job's own rows.
	Committing bool `json:"committing,omitempty"`
	// RunMs is the time spent running, across restarts.
	RunMs int64 `json:"run_ms"`
}

// finished reports whether the job ended.
func (r *record) finished() bool {
	return r.Status == StatusDone || r.Status == StatusFailed || r.Status == StatusCanceled
}

// view is the Job as shown, progress computed.
func (r *record) view() Job {
	j := r.Job
	j.Progress.BytesDone, j.Progress.BytesTotal = r.Offset, r.File.Bytes
	if r.Status == StatusDone {
		j.Progress.BytesDone = r.File.Bytes
	}
	if j.Progress.BytesTotal > 0 {
		j.Progress.Percent = math.Round(float64(j.Progress.BytesDone)/float64(j.Progress.BytesTotal)*1000) / 10
	}
	if secs := float64(r.RunMs) / 1000; secs > 0 {
		j.Progress.RowsPerSecond = math.Round(float64(r.Rows.Read)/secs*10) / 10
		if r.Status == StatusRunning && r.Offset > 0 {
			rate := float64(r.Offset) / secs
			j.Progress.ETASeconds = math.Round(float64(r.File.Bytes-r.Offset) / rate)
		}
	}
	if j.SkippedByReason == nil {
		j.SkippedByReason = map[string]int64{}
	}
	if j.FailedByReason == nil {
		j.FailedByReason = map[string]int64{}
	}
	return j
}

// RowError is one per-row error as the admin API shows it: the row, the
// mapping field and column concerned, the reason code and its
// explanation. Never the value.
type RowError struct {
	// Row is the data row (1 for the first row after a CSV header; NDJSON:
	// the first non-empty line).
	Row uint64 `json:"row"`
	// Field is the mapping field concerned ("properties.total"), if any.
	Field string `json:"field,omitempty"`
	// Column is the file's column concerned, if any.
	Column string `json:"column,omitempty"`
	// Reason is the reason code (invalid_number, consent_denied…).
	Reason string `json:"reason"`
	// Skipped is true for a valid row kept out by a rule (consent,
	// retention, suppression), false for a row that failed.
	Skipped bool `json:"skipped"`
	// Message explains Reason.
	Message string `json:"message"`
}
