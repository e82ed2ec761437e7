package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("--help exit code %d, want 0", code)
	}
	if !strings.HasPrefix(out.String(), "onceflow: exactly-once") {
		t.Fatalf("--help printed %q", out.String())
	}
	out.Reset()
	if code := run(nil, &out, &errOut); code != 2 {
		t.Fatalf("no arguments: exit code %d, want 2", code)
	}
}
