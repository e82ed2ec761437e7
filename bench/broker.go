package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// repoRoot finds the onceflow module root from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/onceflow/onceflow\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the suite inside the onceflow repository (go.mod of github.com/onceflow/onceflow not found)")
		}
		dir = parent
	}
}

func portsFree(ports ...int) bool {
	for _, p := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// localBroker is a broker the suite started with scripts/kafka-local.sh.
type localBroker struct {
	script, stateFile string
	pids              []int // its processes, from the script's summary line
}

// startRepoBroker starts the local broker with the scripts of the
// repository the working directory is in.
func startRepoBroker(ctx context.Context) (*localBroker, string, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, "", fmt.Errorf("local broker: %w", err)
	}
	return startLocalBroker(ctx, root)
}

// randomName is prefix followed by eight random hex digits, for topics and
// application ids no earlier run used.
func randomName(prefix string) string {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return prefix + hex.EncodeToString(rnd[:])
}

// startLocalBroker runs `kafka-local.sh up` on a free port with a state
// file of its own, so it never touches a broker someone else started.
func startLocalBroker(ctx context.Context, root string) (*localBroker, string, error) {
	port := 0
	// Below Linux's ephemeral range (32768-60999): a port in it can be
	// taken by an outgoing connection between the check and the bind.
	for _, p := range []int{21092, 21192, 21292, 21392} {
		if portsFree(p, p+100) {
			port = p
			break
		}
	}
	if port == 0 {
		return nil, "", errors.New("local broker: no free port among 21092..21392")
	}
	lb := &localBroker{
		script:    filepath.Join(root, "scripts", "kafka-local.sh"),
		stateFile: filepath.Join(os.TempDir(), fmt.Sprintf("onceflow-bench-kafka-%d.state", os.Getpid())),
	}
	fmt.Fprintf(os.Stderr, "bench: no --brokers or $KAFKA_BROKERS: starting a local Apache Kafka on 127.0.0.1:%d (scripts/kafka-local.sh)\n", port)
	cmd := exec.CommandContext(ctx, lb.script, "up", "--port", strconv.Itoa(port))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "ONCEFLOW_KAFKA_STATE="+lb.stateFile)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	brokers := ""
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "KAFKA_BROKERS="); ok {
			brokers = strings.TrimSpace(v)
		} else if strings.TrimSpace(line) != "" {
			fmt.Fprintln(os.Stderr, "bench:", line)
			if lb.pids == nil {
				lb.pids = summaryPIDs(line)
			}
		}
	}
	if err != nil || brokers == "" {
		lb.stop()
		if err == nil {
			err = errors.New("no KAFKA_BROKERS line in its output")
		}
		return nil, "", fmt.Errorf("local broker: kafka-local.sh up: %w", err)
	}
	return lb, brokers, nil
}

// summaryPIDs returns the process ids of kafka-local.sh's summary line,
// "Apache Kafka 4.x.y (KRaft, 1 node(s), pids 123 456)", or nil.
func summaryPIDs(line string) []int {
	_, rest, ok := strings.Cut(line, ", pids ")
	if !ok {
		return nil
	}
	pids, err := parsePIDs(strings.ReplaceAll(strings.TrimSuffix(strings.TrimSpace(rest), ")"), " ", ","))
	if err != nil {
		return nil
	}
	return pids
}

// stop runs `kafka-local.sh down` for the broker this suite started.
func (lb *localBroker) stop() {
	cmd := exec.Command(lb.script, "down")
	cmd.Env = append(os.Environ(), "ONCEFLOW_KAFKA_STATE="+lb.stateFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: kafka-local.sh down: %v\n", err)
	}
	_ = os.Remove(lb.stateFile)
}
