package ingest

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeLookup stands in for DNS: these names resolve, every other name does not.
func fakeLookup(_ context.Context, host string) ([]net.IPAddr, error) {
	ips := map[string][]string{
		"cam.example":      {"10.0.0.7"},
		"metadata.example": {"169.254.169.254"},
		"dual.example":     {"192.0.2.1", "fe80::2"},
		"mapped.example":   {"::ffff:169.254.10.10"},
	}[host]
	if ips == nil {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []net.IPAddr
	for _, s := range ips {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	return out, nil
}

func TestSourcePolicyNetwork(t *testing.T) {
	defer func(f func(context.Context, string) ([]net.IPAddr, error)) { lookupIPAddr = f }(lookupIPAddr)
	lookupIPAddr = fakeLookup

	const secret = "hunter2"
	for _, tc := range []struct {
		url       string
		allowLL   bool
		want      string // the URL to open; "" when refused
		errSubstr string
	}{
		{url: "rtsp://admin:hunter2@10.0.0.5:554/live", want: "rtsp://admin:hunter2@10.0.0.5:554/live"},
		{url: "RTSP://cam.example/stream1", want: "rtsp://cam.example/stream1"},
		{url: "rtsps://cam.example/s", want: "rtsps://cam.example/s"},
		{url: "http://192.168.1.20/video.mjpg", want: "http://192.168.1.20/video.mjpg"},
		{url: "HttpS://[2001:db8::1]:8443/x?y=1", want: "https://[2001:db8::1]:8443/x?y=1"},
		{url: "http://localhost:8080/cam", want: "http://localhost:8080/cam"},
		// A name that does not resolve goes through: the camera will retry.
		{url: "rtsp://nowhere.invalid/s", want: "rtsp://nowhere.invalid/s"},

		{url: "http://169.254.169.254/latest/meta-data/", errSubstr: "metadata service"},
		{url: "rtsp://admin:hunter2@169.254.1.1/live", errSubstr: "link-local"},
		{url: "http://[fe80::1]/", errSubstr: "link-local"},
		{url: "http://[fe80::1%25eth0]:80/", errSubstr: "link-local"},
		{url: "http://[::ffff:169.254.169.254]/", errSubstr: "metadata service"},
		{url: "http://224.0.0.251/", errSubstr: "link-local"},
		{url: "http://metadata.example/", errSubstr: "resolves to 169.254.169.254"},
		{url: "rtsp://u:hunter2@dual.example/", errSubstr: "resolves to fe80::2"},
		{url: "rtsp://mapped.example/", errSubstr: "resolves to 169.254.10.10"},
		{url: "http://169.254.169.254/latest/", allowLL: true, want: "http://169.254.169.254/latest/"},
		{url: "http://metadata.example/", allowLL: true, want: "http://metadata.example/"},

		// Forms the C resolver reads as 169.254.169.254.
		{url: "http://2852039166/", errSubstr: "unusual form"},
		{url: "http://0xa9.0xfe.0xa9.0xfe/", errSubstr: "unusual form"},
		{url: "http://169.254.43518/", errSubstr: "unusual form"},
		{url: "http://0251.0376.0251.0376/", errSubstr: "unusual form"},
		{url: "http://169.254.169.254./", errSubstr: "unusual form"},
		// Hosts Go and FFmpeg could read differently.
		{url: "http://caf%C3%A9.example/", errSubstr: "ambiguous"},
		{url: "http://cam.example\\@169.254.169.254/", errSubstr: "not a valid http URL"},
		{url: "rtsp://admin:hunt/er2@cam.example/", errSubstr: "not a valid rtsp URL"},
		{url: "rtsp://admin:hunter2@cam.example:port/", errSubstr: "check the host and port"},

		{url: "rtsp:cam.example", errSubstr: "want rtsp://HOST"},
		{url: "http:///path", errSubstr: "host is missing"},
		{url: "", errSubstr: "required"},
		{url: "rtsp://cam.example/s\n", errSubstr: "control character"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			got, err := SourcePolicy{AllowLinkLocal: tc.allowLL}.Check(tc.url)
			checkSource(t, got, err, tc.want, tc.errSubstr)
			if err != nil && (strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "admin")) {
				t.Fatalf("the error repeats the URL's credentials: %v", err)
			}
		})
	}
}

func TestSourcePolicyProtocols(t *testing.T) {
	for _, url := range []string{
		"concat:/videos/a.mp4|/etc/passwd",
		"subfile,,start,0,end,100,,:/etc/passwd",
		"pipe:0",
		"data:video/mp4;base64,AAAA",
		"crypto:/videos/a.mp4",
		"async:http://cam.example/",
		"cache:http://cam.example/",
		"hls+http://cam.example/a.m3u8",
		"tcp://10.0.0.1:80",
		"udp://10.0.0.1:5000",
		"ftp://10.0.0.1/a.mp4",
		"gopher://10.0.0.1/",
		"rtmp://10.0.0.1/live",
		"clip:1.mp4",
	} {
		t.Run(url, func(t *testing.T) {
			got, err := SourcePolicy{FileDirs: []string{"/"}}.Check(url)
			checkSource(t, got, err, "", "is not allowed; use an rtsp://")
			scheme, _, _ := strings.Cut(strings.Split(url, ",")[0], ":")
			if !strings.Contains(err.Error(), `"`+scheme+`:"`) {
				t.Fatalf("the error does not name the protocol %q: %v", scheme, err)
			}
		})
	}
}

func TestSourcePolicyFiles(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	videos, other := filepath.Join(root, "videos"), filepath.Join(root, "other")
	for name, body := range map[string]string{
		"videos/clip.mp4":       "\x00\x00\x00\x18ftypmp42",
		"videos/odd:name.mp4":   "\x00\x00\x00\x18ftypmp42",
		"videos/sub/deep.mkv":   "\x1aE\xdf\xa3",
		"videos/list.m3u8":      "#EXTM3U\n/etc/passwd\n",
		"videos/notes.txt":      "hello",
		"videos/session.SDP":    "v=0\r\n",
		"videos/list.ffconcat":  "ffconcat version 1.0\nfile /etc/passwd\n",
		"videos/disguised.mp4":  "\ufeff#EXTM3U\nfile:///etc/passwd\n",
		"videos/concat.mp4":     "ffconcat version 1.0\nfile /etc/passwd\n",
		"other/secret.mp4":      "\x00\x00\x00\x18ftypmp42",
		"other/videos-evil.mp4": "x",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(filepath.Join(other, "secret.mp4"), filepath.Join(videos, "escape.mp4")))
	must(os.Symlink(other, filepath.Join(videos, "otherdir")))
	must(os.Symlink("clip.mp4", filepath.Join(videos, "alias.mp4")))
	must(os.Symlink(videos, filepath.Join(root, "videolink")))
	must(os.Mkdir(filepath.Join(videos, "folder.mp4"), 0o755))
	clip := filepath.Join(videos, "clip.mp4")
	allow := SourcePolicy{FileDirs: []string{videos}}

	for _, tc := range []struct {
		name, url string
		policy    SourcePolicy
		want      string
		errSubstr string
	}{
		{name: "no dirs", url: clip, errSubstr: "start the gateway with --camera-files DIR to allow files under DIR"},
		{name: "no dirs, file URL", url: "file://" + clip, errSubstr: "--camera-files DIR"},
		{name: "path", url: clip, policy: allow, want: clip},
		{name: "unclean path", url: videos + "/sub/../clip.mp4", policy: allow, want: clip},
		{name: "subdirectory", url: videos + "/sub/deep.mkv", policy: allow, want: videos + "/sub/deep.mkv"},
		{name: "colon in the name", url: videos + "/odd:name.mp4", policy: allow, want: videos + "/odd:name.mp4"},
		{name: "file URL", url: "file://" + clip, policy: allow, want: clip},
		{name: "file URL, localhost", url: "FILE://localhost" + clip, policy: allow, want: clip},
		{name: "symlink inside", url: videos + "/alias.mp4", policy: allow, want: clip},
		{name: "allowed dir is a symlink", url: clip, policy: SourcePolicy{FileDirs: []string{filepath.Join(root, "videolink") + "/"}}, want: clip},
		{name: "path through the dir's symlink", url: root + "/videolink/clip.mp4", policy: allow, want: clip},

		{name: "outside", url: other + "/secret.mp4", policy: allow, errSubstr: "is not under an allowed directory (" + videos + "); start the gateway with --camera-files DIR"},
		{name: "dot-dot", url: videos + "/../other/secret.mp4", policy: allow, errSubstr: "not under an allowed directory"},
		{name: "prefix is not a parent", url: other + "/videos-evil.mp4", policy: SourcePolicy{FileDirs: []string{other + "/videos"}}, errSubstr: "not under an allowed directory"},
		{name: "missing outside says the same", url: "/nonexistent/x.mp4", policy: allow, errSubstr: "not under an allowed directory"},
		{name: "missing inside", url: videos + "/gone.mp4", policy: allow, errSubstr: "no such file"},
		{name: "symlink escape", url: videos + "/escape.mp4", policy: allow, errSubstr: "links to " + other + "/secret.mp4, outside the allowed directories"},
		{name: "symlinked dir escape", url: videos + "/otherdir/secret.mp4", policy: allow, errSubstr: "outside the allowed directories"},
		{name: "m3u8", url: videos + "/list.m3u8", policy: allow, errSubstr: "playlists"},
		{name: "txt", url: videos + "/notes.txt", policy: allow, errSubstr: "playlists"},
		{name: "sdp", url: videos + "/session.SDP", policy: allow, errSubstr: "playlists"},
		{name: "ffconcat", url: "file://" + videos + "/list.ffconcat", policy: allow, errSubstr: "playlists"},
		{name: "playlist named .mp4", url: videos + "/disguised.mp4", policy: allow, errSubstr: "M3U/HLS playlist"},
		{name: "concat script named .mp4", url: videos + "/concat.mp4", policy: allow, errSubstr: "concat script"},
		{name: "directory", url: videos + "/folder.mp4", policy: allow, errSubstr: "not a regular file"},
		{name: "file URL with host", url: "file://fileserver" + clip, policy: allow, errSubstr: "file:///PATH"},
		{name: "relative file URL", url: "file:clip.mp4", policy: allow, errSubstr: "file:///PATH"},
		{name: "file URL with query", url: "file://" + clip + "?x=1", policy: allow, errSubstr: "no query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.policy.Check(tc.url)
			checkSource(t, got, err, tc.want, tc.errSubstr)
		})
	}
}

func checkSource(t *testing.T, got string, err error, want, errSubstr string) {
	t.Helper()
	if want != "" {
		if err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
		return
	}
	if err == nil {
		t.Fatalf("allowed as %q; want it refused with %q", got, errSubstr)
	}
	if !errors.Is(err, ErrSourceNotAllowed) || !strings.Contains(err.Error(), errSubstr) {
		t.Fatalf("error %q (ErrSourceNotAllowed: %v); want one mentioning %q", err, errors.Is(err, ErrSourceNotAllowed), errSubstr)
	}
	if got != "" {
		t.Fatalf("refused, yet returned %q", got)
	}
}
