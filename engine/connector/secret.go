package connector

import (
	"fmt"
	"log/slog"
	"os"
)

// Secret is a credential (a token, a password, a connection URL with a
// password). It prints as *** in every format, in logs and in JSON, so that it
// cannot leak through an error message or a debug dump; Reveal gives the value
// to the code that must send it. The value sits behind a pointer, so that
// even printing a struct that holds a Secret in an unexported field (where
// fmt cannot call its methods) shows an address, not the value.
type Secret struct {
	value *string
}

// NewSecret wraps a credential.
func NewSecret(value string) Secret { return Secret{value: &value} }

// Reveal returns the secret's value ("" for the zero Secret).
func (s Secret) Reveal() string {
	if s.value == nil {
		return ""
	}
	return *s.value
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.Reveal() == "" }

// String returns ***.
func (s Secret) String() string { return "***" }

// GoString returns ***, for %#v.
func (s Secret) GoString() string { return "***" }

// Format prints *** whatever the verb.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("***")) }

// LogValue makes log/slog print ***.
func (s Secret) LogValue() slog.Value { return slog.StringValue("***") }

// MarshalJSON writes "***".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"***"`), nil }

// LookupEnv finds an environment variable; os.LookupEnv is the usual one. Kinds
// take it in their Config so that tests and the engine can say where secrets
// come from without touching the process environment.
type LookupEnv func(name string) (string, bool)

// SecretFromEnv reads the secret held by the environment variable name. what
// says which setting names it, for the error message (for example
// "auth.token_env"). A nil lookup means the process environment.
func SecretFromEnv(lookup LookupEnv, what, name string) (Secret, error) {
	if name == "" {
		return Secret{}, fmt.Errorf("%s is required: name the environment variable that holds the secret", what)
	}
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, ok := lookup(name)
	if !ok || v == "" {
		return Secret{}, fmt.Errorf("%s: environment variable %s is not set", what, name)
	}
	return NewSecret(v), nil
}
