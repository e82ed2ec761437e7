#!/usr/bin/env bash
# test.sh: the project's test command (make test, .ci/run).
#
# With KAFKA_BROKERS set, it runs vet and the race-enabled suite against that
# cluster. Otherwise it starts a local Apache Kafka broker of its own
# (scripts/kafka-local.sh, on its own port and state file so a developer's
# cluster is left alone), runs the suite against it with
# ONCEFLOW_REQUIRE_REAL=1 so that real-broker tests fail rather than skip,
# then runs the suite once more against the in-process kfake broker, and
# stops the broker it started whatever happened.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

gotest_flags=(-count=1 -timeout 15m)

fmt=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$fmt" ]; then
	echo "gofmt: these files need formatting:" >&2
	echo "$fmt" >&2
	exit 1
fi
echo "== go vet ./..."
go vet ./...

if [ -n "${KAFKA_BROKERS:-}" ]; then
	echo "== go test -race ./... against KAFKA_BROKERS=$KAFKA_BROKERS"
	ONCEFLOW_REQUIRE_REAL=1 go test -race "${gotest_flags[@]}" ./...
	exit 0
fi

export ONCEFLOW_KAFKA_STATE="${TMPDIR:-/tmp}/onceflow-kafka-test.$$.state"
port=${ONCEFLOW_TEST_KAFKA_PORT:-29092}
cleanup() { scripts/kafka-local.sh down || true; }
trap cleanup EXIT
up_out=$(scripts/kafka-local.sh up --port "$port")
echo "$up_out"
KAFKA_BROKERS=$(echo "$up_out" | sed -n 's/^KAFKA_BROKERS=//p')
[ -n "$KAFKA_BROKERS" ] || { echo "test.sh: the local broker printed no KAFKA_BROKERS line" >&2; exit 1; }

echo "== go test -race ./... against the real broker at $KAFKA_BROKERS"
KAFKA_BROKERS=$KAFKA_BROKERS ONCEFLOW_REQUIRE_REAL=1 go test -race "${gotest_flags[@]}" ./...

echo "== go test ./... against the in-process kfake broker"
env -u KAFKA_BROKERS -u ONCEFLOW_REQUIRE_REAL go test "${gotest_flags[@]}" ./...
