package sensitive

import "errors"

// Errors of the package.
var (
	// ErrUnknownCategory is a category name that is not one of Categories.
	ErrUnknownCategory = errors.New("unknown sensitive category")
	// ErrUnknownLayer is a layer name that is not one of the Layers.
	ErrUnknownLayer = errors.New("unknown sensitive layer")
	// ErrUnknownAction is an action name that is not one of the Actions.
	ErrUnknownAction = errors.New("unknown sensitive action")
	// ErrInvalidPath is a sensitive_paths pattern that is not a path.
	ErrInvalidPath = errors.New("invalid sensitive path pattern")
	// ErrInvalidTerms is a term list that does not parse (embedded data:
	// a build-time error, caught by the tests).
	ErrInvalidTerms = errors.New("invalid sensitive term list")
)
