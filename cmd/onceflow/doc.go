// Command onceflow is the command-line front end: it runs a demo topology on
// an embedded broker, describes topologies, and drives the benchmark. The
// main file stays thin; each subcommand lives in a file of its own.
package main
