// Package kafkatest points one test suite at either a real Kafka cluster or
// the in-process kfake broker.
//
// When KAFKA_BROKERS is set (host:port[,host:port...]), Brokers returns that
// cluster; otherwise each call starts a kfake cluster that the test's Cleanup
// closes. Tests that only mean something against a real broker (crash tests,
// fencing across processes, anything about transaction cost) call
// RequireReal: it skips when no real broker is configured, and fails instead
// when ONCEFLOW_REQUIRE_REAL=1 (as `make test` sets it), so that a missing
// broker can never turn into a green run.
//
// Topic names are unique per call (test name plus a random suffix), so tests
// never collide on a shared broker, and the topics are deleted again when the
// test ends.
package kafkatest
