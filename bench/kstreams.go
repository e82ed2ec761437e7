package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// The anchor: the same workloads in Kafka Streams, the Java program in
// bench/kstreams (built with Maven, run with java -jar).

const kstreamsJar = "bench/kstreams/target/kstreams-bench.jar"

// buildKStreams builds the Kafka Streams program. It returns the jar's path,
// or "" and a note saying why the anchor is skipped.
func buildKStreams(ctx context.Context, root, logDir string) (jar, note string) {
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Sprintf("Kafka Streams anchor skipped: %q is not on PATH (it needs Java 17+ and Maven)", tool)
		}
	}
	logPath := filepath.Join(logDir, "kstreams-build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", fmt.Sprintf("Kafka Streams anchor skipped: %v", err)
	}
	defer logf.Close()
	fmt.Fprintln(os.Stderr, "bench: building the Kafka Streams program (mvn -q -B -f bench/kstreams/pom.xml package)")
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-f", "bench/kstreams/pom.xml", "package")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return "", fmt.Sprintf("Kafka Streams anchor skipped: the Maven build failed (%v; log in %s)", err, logPath)
	}
	jar = filepath.Join(root, kstreamsJar)
	if _, err := os.Stat(jar); err != nil {
		return "", fmt.Sprintf("Kafka Streams anchor skipped: the build made no %s", kstreamsJar)
	}
	return jar, ""
}

// kstreamsGuarantee maps a guarantee to Kafka Streams'
// processing.guarantee; at-most-once has none.
func kstreamsGuarantee(g string) (string, bool) {
	switch g {
	case gExactlyOnce:
		return "exactly_once_v2", true
	case gAtLeastOnce:
		return "at_least_once", true
	}
	return "", false
}

// kstreamsArgv is the command line of one Kafka Streams instance.
func kstreamsArgv(jar, brokers string, rc runConfig, in, out, app, stateDir string, threads int) []string {
	g, _ := kstreamsGuarantee(rc.Guarantee)
	return []string{
		"java", "-jar", jar,
		"--brokers", brokers,
		"--input", in,
		"--output", out,
		"--app-id", app,
		"--workload", rc.Workload,
		"--guarantee", g,
		"--commit-interval-ms", strconv.FormatInt(rc.IntervalMS, 10),
		"--state-dir", stateDir,
		"--threads", strconv.Itoa(threads),
	}
}
