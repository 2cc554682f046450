package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// proc is one child process of the cluster. It dies with the test process in any way
// (PR_SET_PDEATHSIG, which the kernel sends when the thread that forked the child exits;
// so the fork and the wait run on one goroutine locked to its thread for the child's
// life, as kafkanode does for its JVMs).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // its exit status, set before done is closed
}

// startProc starts cmd with its output appended to logPath.
func startProc(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	fmt.Fprintf(logf, "--- %s: starting %s\n", time.Now().Format(time.RFC3339Nano), cmd.Args)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the child's wait
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		fmt.Fprintf(logf, "--- %s: exited: %v\n", time.Now().Format(time.RFC3339Nano), p.err)
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("cluster: starting %s: %w", name, err)
	}
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(sig syscall.Signal) error {
	if p.exited() {
		return fmt.Errorf("cluster: %s has exited (%v)", p.name, p.err)
	}
	return p.cmd.Process.Signal(sig)
}

// stop sends sig and waits up to grace for the exit, then kills. A stopped (SIGSTOP)
// process is continued first so that it can act on sig.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	if sig != syscall.SIGKILL {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
