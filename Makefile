# One-command tasks. `make test` is the project's test command; .ci/run calls it.

.PHONY: test test-kfake kafka-up kafka-up-3 kafka-down kafka-status demo bench bench-quick fmt vet

# Vet, then the race-enabled suite against a real Apache Kafka broker (started
# and stopped here unless KAFKA_BROKERS names one), then the suite on kfake.
test:
	scripts/test.sh

# The fast loop: the whole suite on the in-process kfake broker only.
test-kfake:
	env -u KAFKA_BROKERS go test -count=1 ./...

kafka-up:
	scripts/kafka-local.sh up

kafka-up-3:
	scripts/kafka-local.sh up --nodes 3

kafka-down:
	scripts/kafka-local.sh down

kafka-status:
	scripts/kafka-local.sh status

demo:
	@echo "make demo: the CLI demo is not built yet (see the CLI issue)"; exit 1

# The benchmark suite (bench/README.md): against KAFKA_BROKERS, or a local
# broker it starts and stops. Results go to bench/results/<date>/.
bench:
	go run ./bench

# Three minutes: copy and wordcount, 100 B, 100 ms, onceflow and the raw pipe.
bench-quick:
	go run ./bench --quick

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	go vet ./...
