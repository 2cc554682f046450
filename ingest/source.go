package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrSourceNotAllowed is what every error of SourcePolicy.Check matches (errors.Is). Its
// message is meant for the person who configured the camera (an HTTP handler answers it
// with 400): it says what is wrong and how to allow it, and never repeats the URL's
// credentials.
var ErrSourceNotAllowed = errors.New("camera source not allowed")

// SourcePolicy says which camera URLs may be pulled. A pulled camera's URL is handed to
// FFmpeg, which also opens local files, protocol chains (concat:, subfile:, pipe:, …) and
// playlists that name further files; the policy lets only cameras and chosen video files
// through.
//
// The zero policy allows rtsp://, rtsps://, http:// and https:// URLs whose host is not
// link-local, and no files.
type SourcePolicy struct {
	// FileDirs are the directories local video files may be read from (a plain path or a
	// file:// URL). Symlinks are resolved before the check. Empty: no files.
	FileDirs []string
	// AllowLinkLocal lets URLs reach link-local hosts (169.254.0.0/16, fe80::/10, among
	// them the cloud metadata service 169.254.169.254).
	AllowLinkLocal bool
}

// sourceResolveTimeout bounds the look-up of a camera's host name.
const sourceResolveTimeout = 2 * time.Second

// lookupIPAddr resolves a camera's host name; tests replace it.
var lookupIPAddr = net.DefaultResolver.LookupIPAddr

// allowedSchemes are the network protocols a camera URL may use.
var allowedSchemes = map[string]bool{"rtsp": true, "rtsps": true, "http": true, "https": true}

// playlistExts are files FFmpeg reads as lists of further inputs (or network sessions),
// which would escape FileDirs.
var playlistExts = map[string]bool{".m3u8": true, ".m3u": true, ".ffconcat": true, ".txt": true, ".sdp": true}

// Check returns what to open for the camera URL raw, or an error matching
// ErrSourceNotAllowed. For a network URL that is the URL itself (scheme lower-cased); for a
// file it is the file's absolute path with symlinks resolved, which is what must be
// opened (not raw). A host name is resolved (2 s at most) and refused if any of its
// addresses is link-local; a name that does not resolve is let through (the camera will
// fail to connect and retry).
func (p SourcePolicy) Check(raw string) (string, error) {
	if raw == "" {
		return "", refuse("camera url: required (rtsp://, rtsps://, http://, https:// or a video file path)")
	}
	for _, c := range raw {
		if c < 0x20 || c == 0x7f {
			return "", refuse("camera url: contains a control character")
		}
	}
	scheme, rest, isURL := splitScheme(raw)
	switch {
	case !isURL:
		return p.checkFile(raw)
	case strings.EqualFold(scheme, "file"):
		return p.checkFileURL(raw)
	case allowedSchemes[strings.ToLower(scheme)]:
		return p.checkNetwork(strings.ToLower(scheme), rest)
	}
	return "", refuse("camera url: FFmpeg protocol %q is not allowed; use an rtsp://, rtsps://, http:// or https:// URL, "+
		"or the path of a video file (a file name containing ':' can be written as ./NAME)", scheme+":")
}

func refuse(format string, args ...any) error {
	return &sourceError{msg: fmt.Sprintf(format, args...)}
}

type sourceError struct{ msg string }

func (e *sourceError) Error() string        { return e.msg }
func (e *sourceError) Is(target error) bool { return target == ErrSourceNotAllowed }

// splitScheme reads the protocol prefix of s the way FFmpeg does (url_find_protocol): a
// run of letters, digits, '+', '-' and '.' followed by ':', or by ',' options and a later
// ':'. Anything else is a file path to FFmpeg.
func splitScheme(s string) (scheme, rest string, ok bool) {
	n := 0
	for n < len(s) && strings.IndexByte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.", s[n]) >= 0 {
		n++
	}
	if n == 0 || n == len(s) {
		return "", "", false
	}
	switch {
	case s[n] == ':':
		return s[:n], s[n+1:], true
	case s[n] == ',' && strings.IndexByte(s[n+1:], ':') >= 0:
		return s[:n], s[n+1:], true
	}
	return "", "", false
}

// checkNetwork checks rest, what follows "scheme:".
func (p SourcePolicy) checkNetwork(scheme, rest string) (string, error) {
	if !strings.HasPrefix(rest, "//") {
		return "", refuse("camera url: want %s://HOST[:PORT]/PATH", scheme)
	}
	u, err := url.Parse(scheme + ":" + rest)
	if err != nil {
		// Go's message may quote part of the credentials; say what to check instead.
		return "", refuse("camera url: not a valid %s URL; check the host and port (characters such as '/', '?', '#' or '%%' in a user name or password must be percent-encoded)", scheme)
	}
	host := u.Hostname()
	if host == "" {
		return "", refuse("camera url: want %s://HOST[:PORT]/PATH; the host is missing", scheme)
	}
	// The host FFmpeg will connect to (av_url_split: the authority ends at '/', '?' or
	// '#'; credentials end at its last '@') must be the one checked here.
	auth := rest[2:]
	if i := strings.IndexAny(auth, "/?#"); i >= 0 {
		auth = auth[:i]
	}
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		auth = auth[i+1:]
	}
	if auth != strings.Replace(u.Host, "%", "%25", 1) { // an IPv6 zone is the one escape allowed
		return "", refuse("camera url: the host part of the %s URL is ambiguous (escaped or unusual characters); write it plainly", scheme)
	}
	if err := p.checkHost(host); err != nil {
		return "", err
	}
	return scheme + ":" + rest, nil
}

// checkHost refuses link-local hosts unless they are allowed.
func (p SourcePolicy) checkHost(host string) error {
	if addr, err := netip.ParseAddr(host); err == nil {
		if !p.AllowLinkLocal && linkLocal(addr) {
			return linkLocalError(host, addr)
		}
		return nil
	}
	// The C resolver FFmpeg uses reads "2852039166", "0xa9.0xfe.0xa9.0xfe" and
	// "169.254.43518" as IPv4 addresses; no real host name ends in a numeric label.
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	if last := strings.ToLower(labels[len(labels)-1]); last == "" || isNumericLabel(last) {
		return refuse("camera url: host %q looks like an IP address in an unusual form; write IPv4 addresses as four decimal numbers (a.b.c.d)", host)
	}
	if p.AllowLinkLocal {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), sourceResolveTimeout)
	defer cancel()
	addrs, err := lookupIPAddr(ctx, host)
	if err != nil {
		return nil // FFmpeg will fail to connect; the camera retries with backoff.
	}
	for _, a := range addrs {
		if addr, ok := netip.AddrFromSlice(a.IP); ok && linkLocal(addr) {
			return linkLocalError(host+" (which resolves to "+addr.Unmap().String()+")", addr)
		}
	}
	return nil
}

func isNumericLabel(s string) bool {
	hex := strings.HasPrefix(s, "0x")
	if hex {
		s = s[2:]
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || hex && 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func linkLocal(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast()
}

func linkLocalError(host string, addr netip.Addr) error {
	what := "a link-local address"
	if addr.Unmap() == netip.AddrFrom4([4]byte{169, 254, 169, 254}) {
		what = "the cloud metadata service's address"
	}
	return refuse("camera url: host %s is %s (169.254.0.0/16, fe80::/10); start the gateway with --camera-link-local to allow cameras there", host, what)
}

// checkFileURL checks a file:// URL: file:///PATH or file://localhost/PATH.
func (p SourcePolicy) checkFileURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || (u.Host != "" && !strings.EqualFold(u.Host, "localhost")) || !strings.HasPrefix(u.Path, "/") {
		return "", refuse("camera url: want a file URL of the form file:///PATH (an absolute path on this machine)")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", refuse("camera url: a file URL takes no query, fragment or user; give the file's path instead")
	}
	return p.checkFile(u.Path)
}

// checkFile checks a local video file and returns its absolute, symlink-free path. Paths
// outside FileDirs get the same answer whether or not they exist.
func (p SourcePolicy) checkFile(path string) (string, error) {
	if len(p.FileDirs) == 0 {
		return "", refuse("camera url: local files are not allowed; start the gateway with --camera-files DIR to allow files under DIR")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", refuse("camera file %s: %v", path, err)
	}
	var dirs, resolvedDirs []string
	for _, d := range p.FileDirs {
		if d, err := filepath.Abs(d); err == nil {
			dirs = append(dirs, d)
			if r, err := filepath.EvalSymlinks(d); err == nil {
				dirs, resolvedDirs = append(dirs, r), append(resolvedDirs, r)
			}
		}
	}
	notAllowed := func() error {
		return refuse("camera file %s is not under an allowed directory (%s); start the gateway with --camera-files DIR to allow files under DIR",
			abs, strings.Join(p.FileDirs, ", "))
	}
	named := within(dirs, abs)
	resolved, err := filepath.EvalSymlinks(abs)
	switch {
	case err != nil && !named:
		return "", notAllowed()
	case errors.Is(err, os.ErrNotExist):
		return "", refuse("camera file %s: no such file", abs)
	case err != nil:
		return "", refuse("camera file %s: %v", abs, unwrapPath(err))
	case !within(resolvedDirs, resolved) && named:
		return "", refuse("camera file %s links to %s, outside the allowed directories (%s); start the gateway with --camera-files DIR to allow files under DIR",
			abs, resolved, strings.Join(p.FileDirs, ", "))
	case !within(resolvedDirs, resolved):
		return "", notAllowed()
	}
	if ext := strings.ToLower(filepath.Ext(resolved)); playlistExts[ext] {
		return "", refuse("camera file %s: %s files are playlists or session descriptions that name further inputs; give a video file", resolved, ext)
	}
	st, err := os.Stat(resolved)
	if err != nil {
		return "", refuse("camera file %s: %v", resolved, unwrapPath(err))
	}
	if !st.Mode().IsRegular() {
		return "", refuse("camera file %s is not a regular file", resolved)
	}
	if kind := sniffPlaylist(resolved); kind != "" {
		return "", refuse("camera file %s is %s, which names further inputs; give a video file", resolved, kind)
	}
	return resolved, nil
}

// within reports whether path is strictly inside one of dirs (all absolute and clean).
func within(dirs []string, path string) bool {
	for _, d := range dirs {
		rel, err := filepath.Rel(d, path)
		if err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// sniffPlaylist reports what list-like format FFmpeg would recognise at the start of the
// file (it probes content, not the name), or "".
func sniffPlaylist(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 64)
	n, _ := io.ReadFull(f, b)
	head := strings.TrimLeft(strings.TrimPrefix(string(b[:n]), "\uFEFF"), " \t\r\n")
	switch {
	case strings.HasPrefix(head, "#EXTM3U"):
		return "an M3U/HLS playlist"
	case strings.HasPrefix(head, "ffconcat"):
		return "an FFmpeg concat script"
	case strings.HasPrefix(head, "v=0"):
		return "an SDP session description"
	}
	return ""
}

// unwrapPath drops the *PathError wrapper (its path is already in the message).
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
