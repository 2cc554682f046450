package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times (100 on Linux).
const clockTicks = 100

// procSample is one process's CPU time and memory at a moment.
type procSample struct {
	cpu time.Duration // user + system
	rss int64         // bytes
	at  time.Time
}

func sampleProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procSample{}, err
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 22 {
		return procSample{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	s := procSample{cpu: time.Duration(utime+stime) * time.Second / clockTicks, at: time.Now()}
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			s.rss = kb << 10
		}
	}
	return s, nil
}

// procWatch measures named processes over a phase: CPU use (in cores) and RSS at its end.
type procWatch struct {
	names  []string
	pids   []int
	starts []procSample
}

func watchProcs(procs map[string]int) *procWatch {
	w := &procWatch{}
	for name, pid := range procs {
		s, err := sampleProc(pid)
		if err != nil {
			continue
		}
		w.names, w.pids, w.starts = append(w.names, name), append(w.pids, pid), append(w.starts, s)
	}
	return w
}

// summary is "gateway 0.45 cores 120 MB; runner ..." for the phase so far.
func (w *procWatch) summary() string {
	var parts []string
	for i, pid := range w.pids {
		end, err := sampleProc(pid)
		if err != nil {
			continue
		}
		cores := (end.cpu - w.starts[i].cpu).Seconds() / end.at.Sub(w.starts[i].at).Seconds()
		parts = append(parts, fmt.Sprintf("%s %.2f cores %d MB", w.names[i], cores, end.rss>>20))
	}
	return strings.Join(parts, "; ")
}

// cpuSeconds is the CPU time all watched processes used since the watch began.
func (w *procWatch) cpuSeconds() float64 {
	var total float64
	for i, pid := range w.pids {
		end, err := sampleProc(pid)
		if err != nil {
			continue
		}
		total += (end.cpu - w.starts[i].cpu).Seconds()
	}
	return total
}

// rssByMapping groups a process's resident memory by what is mapped: OpenCV's and
// FFmpeg's shared libraries, ONNX Runtime, other shared libraries, the executable, and
// anonymous memory (Go's heap and stacks), in MB, largest first, as "opencv 63, anon 20".
func rssByMapping(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps"))
	if err != nil {
		return ""
	}
	exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
	kb := map[string]int64{}
	group := "anon"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && len(f) >= 5 { // a mapping's header line
			group = "anon"
			if len(f) >= 6 {
				group = mappingGroup(f[5], exe)
			}
			continue
		}
		if f[0] == "Rss:" && len(f) >= 2 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			kb[group] += v
		}
	}
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range kb {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return int(b.v - a.v) })
	var parts []string
	for _, e := range all {
		if e.v >= 1024 {
			parts = append(parts, fmt.Sprintf("%s %d", e.k, e.v>>10))
		}
	}
	return strings.Join(parts, ", ")
}

func mappingGroup(path, exe string) string {
	base := filepath.Base(path)
	switch {
	case path == exe:
		return "executable"
	case strings.HasPrefix(base, "libopencv"):
		return "opencv"
	case strings.HasPrefix(base, "libav") || strings.HasPrefix(base, "libsw") || strings.HasPrefix(base, "libpostproc"):
		return "ffmpeg"
	case strings.HasPrefix(base, "libonnxruntime"):
		return "onnxruntime"
	case strings.Contains(base, ".so"):
		return "other libraries"
	case strings.HasPrefix(path, "["):
		return "anon" // [heap], [stack]
	}
	return "other files"
}
