package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: the benchmark suite is not built yet; see the README's roadmap")
	os.Exit(2)
}
