package rollout

import (
	"errors"
	"fmt"
)

// Kind sorts rollout's errors for callers that branch on them; the gateway picks an HTTP
// status by it (in one place), the CLI an exit code by that status.
type Kind uint8

// The kinds of error rollout returns. An error of none of them (a Kind of 0 from KindOf)
// is a failure of the control plane or of rollout itself.
const (
	_ Kind = iota
	// Invalid: the request is wrong; the message names the field and what is wanted.
	Invalid
	// NotFound: something the request names does not exist.
	NotFound
	// Conflict: the request clashes with what exists (a name taken, a dependent left).
	Conflict
	// Upstream: Kafka or a function image's registry failed or refused.
	Upstream
	// Unavailable: a service the request needs does not answer now; try again later.
	Unavailable
)

var kindNames = [...]string{"error", "invalid", "not found", "conflict", "upstream", "unavailable"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind %d", k)
}

// Targets for errors.Is: errors.Is(err, ErrNotFound) holds for every error of kind NotFound.
var (
	ErrInvalid     = &Error{Kind: Invalid}
	ErrNotFound    = &Error{Kind: NotFound}
	ErrConflict    = &Error{Kind: Conflict}
	ErrUpstream    = &Error{Kind: Upstream}
	ErrUnavailable = &Error{Kind: Unavailable}
)

// Error is an error of a Kind. Its message is for the user: it says what was wrong and,
// where there is one, the command that helps.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Kind.String()
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the kind's target (ErrInvalid, ErrNotFound, ...).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Err == nil && t.Kind == e.Kind
}

// KindOf is the kind of err's first *Error; 0 when it has none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// errorf returns an error of kind k; %w in format wraps as fmt.Errorf does.
func errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Err: fmt.Errorf(format, args...)}
}
