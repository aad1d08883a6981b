// Package functions is Kubeless's function contract (github.com/kubeless/kubeless/pkg/functions),
// so Kubeless Go functions build unchanged.
package functions

import (
	"context"
	"net/http"
)

// Extension carries the request, as Kubeless's runtime did.
type Extension struct {
	Request  *http.Request
	Response http.ResponseWriter
	Context  context.Context
}

// Event is what a function receives.
type Event struct {
	Data           string
	EventID        string
	EventType      string
	EventTime      string
	EventNamespace string
	Extensions     Extension
}

// Context describes the function.
type Context struct {
	FunctionName string
	Timeout      string
	Runtime      string
	MemoryLimit  string
}
