// Command bench measures what each delivery guarantee costs: onceflow under
// at-most-once, at-least-once and exactly-once, next to a raw franz-go pipe
// and Kafka Streams, on the same real broker in one run. Results are written
// to files (JSON, Markdown tables, charts); nothing here is asserted in tests.
package main
