package gateway

import (
	_ "embed"
	"net/http"
)

// indexHTML is the dashboard: one page, no build step, talking to /v1 like the CLI does.
//
//go:embed ui/index.html
var indexHTML []byte

func (s *Server) ui(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
	w.Write(indexHTML)
}
