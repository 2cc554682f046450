package scaler

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// LocalDriver starts runner processes on this machine: Command plus "--id ID". Each is
// started with PR_SET_PDEATHSIG from a goroutine locked to its thread, so runners die
// with the process that started them, and its output goes to LogDir/ID.log.
type LocalDriver struct {
	Command []string // e.g. [/usr/local/bin/diplip runner --nats nats://...]
	Env     []string // added to this process's environment
	LogDir  string
	Logger  *slog.Logger

	mu    sync.Mutex
	n     int
	procs map[string]*localProc
}

type localProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Launch starts one more runner.
func (d *LocalDriver) Launch() error {
	d.mu.Lock()
	d.n++
	id := fmt.Sprintf("local-%d-%d", os.Getpid(), d.n)
	if d.procs == nil {
		d.procs = map[string]*localProc{}
	}
	d.mu.Unlock()
	if err := os.MkdirAll(d.LogDir, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(d.LogDir, id+".log"))
	if err != nil {
		return err
	}
	args := append(append([]string{}, d.Command[1:]...), "--id", id)
	cmd := exec.Command(d.Command[0], args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), d.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &localProc{cmd: cmd, done: make(chan struct{})}
	d.mu.Lock()
	d.procs[id] = p // before it can exit, so reap finds it
	d.mu.Unlock()
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as the runner
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		close(p.done)
		d.reap(id, p, err)
	}()
	if err := <-started; err != nil {
		d.mu.Lock()
		delete(d.procs, id)
		d.mu.Unlock()
		return fmt.Errorf("starting runner %s: %w", id, err)
	}
	if d.Logger != nil {
		d.Logger.Info("runner process started", "runner", id, "pid", cmd.Process.Pid, "log", logf.Name())
	}
	return nil
}

// reap forgets a runner process that exited by itself, so it is neither counted nor
// retired later; the exit is logged with its status.
func (d *LocalDriver) reap(id string, p *localProc, err error) {
	d.mu.Lock()
	mine := d.procs[id] == p
	if mine {
		delete(d.procs, id)
	}
	d.mu.Unlock()
	if mine && d.Logger != nil {
		d.Logger.Warn("runner process exited", "runner", id, "status", exitStatus(err), "log", filepath.Join(d.LogDir, id+".log"))
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// Retire stops runner id (SIGTERM, then SIGKILL after 15 s) if this driver started it.
func (d *LocalDriver) Retire(id string) bool {
	d.mu.Lock()
	p, ok := d.procs[id]
	delete(d.procs, id)
	d.mu.Unlock()
	if !ok {
		return false
	}
	stopProc(p)
	return true
}

func stopProc(p *localProc) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// PIDs lists the runner processes this driver has running, by id.
func (d *LocalDriver) PIDs() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for id, p := range d.procs {
		out[id] = p.cmd.Process.Pid
	}
	return out
}

// Close stops every runner this driver started, in parallel.
func (d *LocalDriver) Close() {
	d.mu.Lock()
	procs := d.procs
	d.procs = nil
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { stopProc(p) })
	}
	wg.Wait()
}
