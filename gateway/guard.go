package gateway

import (
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// guard refuses requests that a web page on another site, or one reached through DNS
// rebinding, could make against the gateway:
//
//   - the Host header must name this gateway: its listener address, localhost or a
//     loopback address on its port, or one of AllowedHosts (else 421, since a browser
//     tricked by DNS rebinding sends the attacker's name);
//   - a request with an Origin header must come from the gateway's own origin or one of
//     AllowedOrigins (else 403): browsers send Origin on every cross-site POST, so no
//     page elsewhere can create streams or cameras.
//
// With a token and no AllowedHosts, any Host is accepted (the token is the guard; a
// public listener is reached by names the gateway cannot know), but Origin still is
// checked.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			writeJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": "host " + quote(r.Host) +
				" is not this gateway's; allow the name with --allow-host " + hostOnly(r.Host)})
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !s.originAllowed(o, r.Host) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-site request from origin " + quote(o) +
				" refused; allow it with --allow-origin " + o})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) hostAllowed(host string) bool {
	if host == "" {
		return true // HTTP/1.0 clients; no browser sends a request without Host
	}
	if slices.ContainsFunc(s.cfg.AllowedHosts, func(h string) bool { return strings.EqualFold(h, host) || strings.EqualFold(h, hostOnly(host)) }) {
		return true
	}
	if s.cfg.Token != "" && len(s.cfg.AllowedHosts) == 0 {
		return true
	}
	h, port := splitHostPort(host)
	if s.cfg.ListenAddr != "" {
		lh, lport := splitHostPort(s.cfg.ListenAddr)
		if port != lport && !(port == "" && lport == "80") {
			return false
		}
		if strings.EqualFold(h, lh) {
			return true
		}
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) originAllowed(origin, host string) bool {
	if slices.Contains(s.cfg.AllowedOrigins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, host) // same origin: the dashboard itself
}

func splitHostPort(hp string) (host, port string) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return strings.Trim(hp, "[]"), ""
	}
	return h, p
}

func hostOnly(hp string) string { h, _ := splitHostPort(hp); return h }

func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
