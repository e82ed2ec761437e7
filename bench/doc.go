// Command bench measures what each delivery guarantee costs: onceflow under
// at-most-once, at-least-once and exactly-once, next to a raw franz-go pipe
// (the limit) and Kafka Streams (the anchor), on the same real broker in
// one run. Each system runs as its own child process (the subcommands
// processor and rawpipe of this command, or the jar in bench/kstreams), so
// its CPU time and peak RSS are its own. Results are written to files
// (results.json, results.md, PNG charts); nothing here is asserted in
// tests. See bench/README.md.
package main
