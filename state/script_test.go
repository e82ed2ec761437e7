package state_test

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A tiny data-driven test runner (the format of cockroachdb/datadriven,
// written here to avoid the dependency).
//
// A script is a sequence of cases. A case is one command line, a line
// "----", and the expected output: the lines up to the next blank line (or the
// end of the file). Lines starting with '#' between cases are comments. The
// output must not contain blank lines.
//
// A command line is a command name followed by space-separated arguments.
// An argument "name=value" whose name is one the runner was told about is a
// named argument; any other argument is positional.
//
// Run "go test ./state/ -run TestScripts -rewrite" to rewrite the expected
// outputs from the actual ones.

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of data-driven tests")

// scriptCmd is one parsed command line.
type scriptCmd struct {
	pos   string // file:line, for messages
	name  string
	args  map[string]string // named arguments
	posit []string          // positional arguments
}

// has reports whether the named argument is present.
func (c scriptCmd) has(name string) bool {
	_, ok := c.args[name]
	return ok
}

type scriptCase struct {
	line     int // 1-based line of the command
	cmd      string
	expected string
	// span of the expected output in the file's lines: [outStart, outEnd)
	outStart, outEnd int
}

func parseScript(t *testing.T, path string) ([]string, []scriptCase) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	var cases []scriptCase
	for i := 0; i < len(lines); {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			i++
			continue
		}
		c := scriptCase{line: i + 1, cmd: l}
		i++
		if i >= len(lines) || strings.TrimSpace(lines[i]) != "----" {
			t.Fatalf("%s:%d: want ---- after the command (one command per case)", path, c.line)
		}
		i++
		c.outStart = i
		var out []string
		for i < len(lines) && strings.TrimSpace(lines[i]) != "" {
			out = append(out, lines[i])
			i++
		}
		c.outEnd = i
		c.expected = strings.Join(out, "\n")
		cases = append(cases, c)
	}
	return lines, cases
}

func parseCmd(pos, line string, named []string) scriptCmd {
	fields := strings.Fields(line)
	c := scriptCmd{pos: pos, name: fields[0], args: map[string]string{}}
	for _, f := range fields[1:] {
		name, value, ok := strings.Cut(f, "=")
		isNamed := false
		for _, n := range named {
			if ok && n == name {
				isNamed = true
			}
		}
		if isNamed {
			c.args[name] = value
		} else {
			c.posit = append(c.posit, f)
		}
	}
	return c
}

// runScript runs every case of the script at path through run, which
// returns the command's output, and compares it with the expected output (or
// rewrites it with -rewrite). named lists the named-argument names.
func runScript(t *testing.T, path string, named []string, run func(scriptCmd) string) {
	t.Helper()
	lines, cases := parseScript(t, path)
	var outs []string
	for _, c := range cases {
		pos := fmt.Sprintf("%s:%d", filepath.Base(path), c.line)
		got := strings.TrimRight(run(parseCmd(pos, c.cmd, named)), "\n")
		if got == "" {
			got = "ok"
		}
		outs = append(outs, got)
		if !*rewrite && got != c.expected {
			t.Errorf("%s: %s\n got:\n%s\nwant:\n%s", pos, c.cmd, got, c.expected)
		}
	}
	if !*rewrite {
		return
	}
	var b strings.Builder
	prev := 0
	for i, c := range cases {
		for _, l := range lines[prev:c.outStart] {
			b.WriteString(l + "\n")
		}
		b.WriteString(outs[i] + "\n")
		prev = c.outEnd
	}
	for _, l := range lines[prev:] {
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
