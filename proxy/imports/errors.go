package imports

import "errors"

// Sentinel errors of the package.
var (
	// ErrInvalidMapping wraps every *MappingError.
	ErrInvalidMapping = errors.New("imports: invalid mapping")
	// ErrNotFound is returned for a job id that is not stored.
	ErrNotFound = errors.New("imports: no such import job")
	// ErrFinished is returned when canceling a job that already ended.
	ErrFinished = errors.New("imports: the job already ended")
	// ErrStopped is returned by the service's methods after Stop.
	ErrStopped = errors.New("imports: service stopped")
	// errRowTooLarge stops a CSV file with a record larger than
	// MaxRowBytes: memory stays bounded, so the file cannot be read on.
	errRowTooLarge = errors.New("imports: a row is larger than the limit")
	// errHeaderTooLarge refuses a CSV file whose header row does not end
	// within MaxRowBytes: its columns cannot all be known.
	errHeaderTooLarge = errors.New("imports: the header row is larger than the limit")
)

// MappingError is a problem of a mapping, naming the field in the
// mapping's own terms (e.g. "properties.total.type").
type MappingError struct {
	// Field is the mapping field, dotted ("identity.column").
	Field string
	// Problem says what is wrong, without any value of the file.
	Problem string
}

// Error is "field: problem".
func (e *MappingError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap returns ErrInvalidMapping.
func (e *MappingError) Unwrap() error { return ErrInvalidMapping }

func bad(field, problem string) error { return &MappingError{Field: field, Problem: problem} }
