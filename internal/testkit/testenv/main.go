// Command testenv runs a command (normally `go test ./...`) against one real Kafka broker
// started for the run, then stops the broker and fails if any broker JVM started during
// the run is still alive.
//
//	go run ./internal/testkit/testenv -- go test -race ./...
//
// The broker's address reaches the tests in DIPLIP_TEST_KAFKA (see package testkit). The
// broker's data and log live in a temporary directory that is removed after a passing
// run and kept, with its path printed, after a failing one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/engines/kafkanode"
	"github.com/diplip/diplip/internal/testkit"
)

func main() {
	heap := flag.Int("kafka-heap", 512, "broker heap in MB")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: testenv [-kafka-heap MB] -- COMMAND [ARG...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(run(*heap, flag.Args()))
}

// runEnv marks every process of this run: children inherit it, so a broker JVM started
// by any test of this run carries it, and one of another run (a second `task test` at the
// same time) does not.
const runEnv = "DIPLIP_TESTENV_RUN"

func run(heapMB int, command []string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	runID := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
	os.Setenv(runEnv, runID) // before the broker starts, so it inherits it too

	dir, err := os.MkdirTemp("", "diplip-testenv-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	t0 := time.Now()
	kafka, err := kafkanode.Start(context.Background(), kafkanode.Config{
		Dir: filepath.Join(dir, "kafka"), HeapMB: heapMB, FastStart: true, Logger: logger,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: could not start the test run's Kafka broker: %v\n"+
			"Install what it needs with: go tool task setup\n", err)
		return 1
	}
	addrs := strings.Join(kafka.Addrs(), ",")
	fmt.Fprintf(os.Stderr, "testenv: kafka %s ready at %s in %.1fs (log: %s)\n",
		assets.KafkaVersion, addrs, time.Since(t0).Seconds(), kafka.LogPath(0))

	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), testkit.EnvKafka+"="+addrs)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	rc := 0
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		rc = 1
	} else {
		go func() {
			for s := range sigs {
				_ = cmd.Process.Signal(s)
			}
		}()
		if err := cmd.Wait(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				rc = ee.ExitCode()
			} else {
				fmt.Fprintln(os.Stderr, "testenv:", err)
				rc = 1
			}
		}
	}
	signal.Stop(sigs)
	close(sigs)

	_ = kafka.Stop()
	if left := leftOver(runID); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "testenv: FAIL: broker JVMs started during the run are still alive: %v; killing them\n", left)
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		rc = 1
	} else {
		fmt.Fprintln(os.Stderr, "testenv: no broker JVM left running")
	}
	if rc == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "testenv: kept the broker's data and log in %s\n", dir)
	}
	return rc
}

// leftOver returns the broker JVMs of this run that are still alive. A JVM killed by
// its dying owner may take a moment to go, so it is given a few seconds.
func leftOver(runID string) []int {
	var left []int
	for range 20 {
		left = left[:0]
		for _, pid := range kafkanode.BrokerPIDs() {
			env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
			if err == nil && slices.Contains(strings.Split(string(env), "\x00"), runEnv+"="+runID) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return left
}
