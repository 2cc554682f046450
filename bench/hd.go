package bench

import (
	"bytes"
	"context"
	"fmt"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/wire"
)

// The 1080p rows (issue #26): a real camera sends 1920x1080, the sample video is 768x576,
// and a frame's JPEG decode grows with its pixels while the model's input does not. The
// frames are the sample's, upscaled by ffmpeg once into the media cache beside the sample
// (the bench is their only user, and making them takes about a second), by this command,
// pinned: Lanczos scaling to exactly 1920x1080 (4:3 stretched to 16:9), the MJPEG
// encoder at quality 5 (the sample's own), no audio.
const (
	hdWidth, hdHeight = 1920, 1080
	hdFile            = "vtest_1080p.mjpeg"
)

func hdArgs(in, out string) []string {
	return []string{"-loglevel", "error", "-y", "-i", in, "-vf", fmt.Sprintf("scale=%d:%d:flags=lanczos", hdWidth, hdHeight),
		"-c:v", "mjpeg", "-q:v", "5", "-an", "-f", "mjpeg", out}
}

// hdFrames returns the 1080p frames made from env.Media, making them first when the
// cached file is missing or is not what the command makes (as many frames as the sample,
// each 1920x1080), and the file's path.
func hdFrames(ctx context.Context, env *Env) ([][]byte, string, error) {
	if env.Media == "" {
		return nil, "", fmt.Errorf("no sample video to upscale (Env.Media)")
	}
	path := filepath.Join(filepath.Dir(env.Media), hdFile)
	if frames, err := readHD(path, len(env.Frames)); err == nil {
		return frames, path, nil
	}
	if err := makeHD(ctx, env.Media, path); err != nil {
		// A read-only media folder: make them in the temporary folder instead.
		path = filepath.Join(os.TempDir(), "diplip-bench-"+hdFile)
		if frames, rerr := readHD(path, len(env.Frames)); rerr == nil {
			return frames, path, nil
		}
		if err2 := makeHD(ctx, env.Media, path); err2 != nil {
			return nil, "", fmt.Errorf("%w; and in %s: %w", err, os.TempDir(), err2)
		}
	}
	env.say("1080p: made %s from %s with ffmpeg", path, env.Media)
	frames, err := readHD(path, len(env.Frames))
	return frames, path, err
}

// makeHD runs the pinned ffmpeg command into a temporary file beside out, then renames it,
// so that a file at out is always whole.
func makeHD(ctx context.Context, in, out string) error {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".tmp-"+hdFile)
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if b, err := exec.CommandContext(ctx, "ffmpeg", hdArgs(in, tmp.Name())...).CombinedOutput(); err != nil {
		return fmt.Errorf("ffmpeg (Debian's ffmpeg, which go tool task setup installs): %v: %s", err, bytes.TrimSpace(b))
	}
	return os.Rename(tmp.Name(), out)
}

// readHD reads the 1080p frames at path and checks them: want frames, each 1920x1080.
func readHD(path string, want int) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	frames := ingest.SplitJPEGs(raw)
	if len(frames) != want {
		return nil, fmt.Errorf("%s: %d frames, want %d", path, len(frames), want)
	}
	for i, f := range frames {
		c, err := jpeg.DecodeConfig(bytes.NewReader(f))
		if err != nil || c.Width != hdWidth || c.Height != hdHeight {
			return nil, fmt.Errorf("%s: frame %d: %dx%d (%v), want %dx%d", path, i, c.Width, c.Height, err, hdWidth, hdHeight)
		}
	}
	return frames, nil
}

// limitConfig is the lanes × threads of the limit row (its Runners are its lanes).
func limitConfig(limit Row) lanesConfig {
	if limit.Runners <= 1 {
		return lanesConfig{1, runtime.NumCPU()}
	}
	return lanesConfig{limit.Runners, 1}
}

// loopRow runs the standalone loop in limit's configuration over env's frames and model
// and returns it as a row named scenario, its ratio fps / limit.
func loopRow(ctx context.Context, sw *Sweep, env *Env, scenario string, limit Row) (Row, error) {
	r, _, err := loopRowResult(ctx, sw, env, scenario, limit)
	return r, err
}

// loopRowResult is loopRow with the loop's own result.
func loopRowResult(ctx context.Context, sw *Sweep, env *Env, scenario string, limit Row) (Row, loopResult, error) {
	cfg := limitConfig(limit)
	env.say("%s: standalone loop %s (lanes × intra-op threads, as limit's) for %v", scenario, cfg, time.Duration(sw.Duration))
	lr, err := runLoop(ctx, time.Duration(sw.Duration), env, cfg)
	if err != nil {
		return Row{}, lr, err
	}
	return Row{Scenario: scenario, Runners: cfg.lanes, FPS: lr.fps, P50: Percentile(lr.lat, 0.5), P95: Percentile(lr.lat, 0.95),
		P99: Percentile(lr.lat, 0.99), Ratio: ratio(lr.fps, limit.FPS),
		Note: fmt.Sprintf("standalone loop, lanes × threads %s (limit's); ratio: fps / limit (%.1f fps); CPU %.1f ms per frame; %s",
			cfg, limit.FPS, lr.cpuPerFrame*1000, lr.stagesNote())}, lr, nil
}

// run1080p measures `limit-1080p` (the limit loop over the 1080p frames; ratio: fps /
// limit) and `drain-1080p` (the sweep's backlog of 1080p frames, one runner, the runner's
// default lanes; ratio: fps / limit-1080p, as drain's is to limit).
func run1080p(ctx context.Context, sw *Sweep, env *Env, limit Row) ([]Row, error) {
	frames, path, err := hdFrames(ctx, env)
	if err != nil {
		return nil, err
	}
	m := *env
	m.Frames = frames
	var size, size0 int
	for i := range frames {
		size += len(frames[i])
	}
	for i := range env.Frames {
		size0 += len(env.Frames[i])
	}
	made := fmt.Sprintf("%d frames of %dx%d upscaled from %s by ffmpeg (%s: Lanczos, 4:3 stretched to 16:9, MJPEG q 5), %d kB each on average (the sample's %d kB)",
		len(frames), hdWidth, hdHeight, filepath.Base(env.Media), filepath.Base(path), size/len(frames)>>10, size0/len(env.Frames)>>10)
	lr, err := loopRow(ctx, sw, &m, "limit-1080p", limit)
	if err != nil {
		return nil, err
	}
	lr.Note = made + "; " + lr.Note
	rows := []Row{lr}
	env.say("drain-1080p: %d frames already in Kafka, one runner", sw.Drain)
	dr, err := runDrain(ctx, &m, sw.Drain, sw.Cameras, 0, lr, wire.AtLeastOnce)
	if err != nil {
		return rows, fmt.Errorf("drain: %w", err)
	}
	dr.Scenario = "drain-1080p"
	dr.Note = fmt.Sprintf("limit-1080p's frames; ratio: fps / limit-1080p (fps / limit: %.2f); ", ratio(dr.FPS, limit.FPS)) + dr.Note
	return append(rows, dr), nil
}
