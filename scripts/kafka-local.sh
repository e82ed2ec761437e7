#!/usr/bin/env bash
# kafka-local.sh: a real Apache Kafka cluster (KRaft) on 127.0.0.1 for tests
# and benchmarks, built from Maven artifacts, with nothing installed system-wide.
#
#   scripts/kafka-local.sh up [--nodes 1|3] [--port P]
#   scripts/kafka-local.sh down
#   scripts/kafka-local.sh status
#
# up      resolves the broker jars once into a cache directory (ONCEFLOW_CACHE,
#         default ~/.cache/onceflow), formats KRaft storage in a fresh temp
#         dir, starts combined broker+controller processes, waits until the
#         cluster answers metadata and commits a transaction, then prints
#         KAFKA_BROKERS=... and the broker version.
# down    stops exactly the processes that up recorded and removes their data.
# status  says what is running.
#
# One cluster at a time per state file (ONCEFLOW_KAFKA_STATE, default
# ${TMPDIR:-/tmp}/onceflow-kafka.state).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
pom="$here/kafka/pom.xml"
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
cache="${ONCEFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onceflow}"
state_file="${ONCEFLOW_KAFKA_STATE:-${TMPDIR:-/tmp}/onceflow-kafka.state}"

die() { echo "kafka-local: $*" >&2; exit 1; }
say() { echo "kafka-local: $*" >&2; }

usage() {
	sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# --- prerequisites ----------------------------------------------------------

check_java() {
	command -v java >/dev/null 2>&1 ||
		die "Java 17 or newer is required to run the broker, and 'java' is not on PATH (Debian: apt-get install openjdk-17-jre-headless)"
	local v major
	v=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
	major=${v%%.*}
	[ "$major" = 1 ] && major=$(echo "$v" | cut -d. -f2)
	[[ "$major" =~ ^[0-9]+$ ]] || die "cannot tell the Java version from 'java -version' (got '$v')"
	[ "$major" -ge 17 ] || die "Java 17 or newer is required, found Java $v"
}

check_maven() {
	command -v mvn >/dev/null 2>&1 ||
		die "Maven is required to fetch the Kafka broker jars, and 'mvn' is not on PATH (Debian: apt-get install maven)"
}

# libs_dir prints the directory holding the broker's jars, resolving them
# through Maven on first use.
libs_dir() {
	local dir="$cache/kafka-$kafka_version"
	if [ ! -f "$dir/.complete" ]; then
		check_maven
		say "resolving Apache Kafka $kafka_version and its dependencies with Maven into $dir"
		rm -rf "$dir/libs"
		mkdir -p "$dir"
		if ! mvn -q -B -f "$pom" dependency:copy-dependencies \
			-DoutputDirectory="$dir/libs" -DincludeScope=runtime >"$dir/mvn.log" 2>&1; then
			tail -n 30 "$dir/mvn.log" >&2
			die "Maven could not resolve org.apache.kafka:kafka_2.13:$kafka_version (log above, full log in $dir/mvn.log)"
		fi
		[ -f "$dir/libs/kafka_2.13-$kafka_version.jar" ] || die "Maven finished but kafka_2.13-$kafka_version.jar is missing in $dir/libs"
		touch "$dir/.complete"
	fi
	echo "$dir/libs"
}

# kafka_uuid prints a random Kafka UUID (16 bytes, URL-safe base64).
kafka_uuid() {
	# URL-safe base64 of 16 random bytes, as Kafka's own ids. Like Kafka,
	# draw again when it starts with '-': kafka-storage would take such an
	# id for an option (one start in 64 failed that way).
	local id
	while :; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
		[ "${id#-}" = "$id" ] && break
	done
	printf '%s\n' "$id"
}

port_free() {
	# A connect that succeeds means something listens there.
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- state ------------------------------------------------------------------

# our_pid tells whether pid is a live broker process of the cluster in dir
# (guards against a recycled pid).
our_pid() {
	local pid=$1 dir=$2
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $dir/" 2>/dev/null
}

read_state() {
	dir= pids= brokers= nodes=
	[ -f "$state_file" ] || return 1
	# shellcheck disable=SC1090
	. "$state_file"
}

live_pids() {
	local p out=()
	for p in $pids; do our_pid "$p" "$dir" && out+=("$p"); done
	echo "${out[*]:-}"
}

# --- commands ---------------------------------------------------------------

cmd_up() {
	local n=1 port=19092
	while [ $# -gt 0 ]; do
		case "$1" in
		--nodes) n=${2:-}; shift 2 || usage ;;
		--nodes=*) n=${1#*=}; shift ;;
		--port) port=${2:-}; shift 2 || usage ;;
		--port=*) port=${1#*=}; shift ;;
		*) die "unknown argument '$1' to up (want --nodes 1|3, --port P)" ;;
		esac
	done
	case "$n" in 1 | 3) ;; *) die "--nodes must be 1 or 3, got '$n'" ;; esac
	[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1024 ] && [ "$port" -le 65000 ] ||
		die "--port must be a number from 1024 to 65000, got '$port'"

	if read_state; then
		local live
		live=$(live_pids)
		if [ -n "$live" ]; then
			say "already running: KAFKA_BROKERS=$brokers (pids $live); run '$0 down' first"
			echo "KAFKA_BROKERS=$brokers"
			exit 1
		fi
		say "removing stale state of a cluster that is no longer running ($dir)"
		rm -rf "$dir"
		rm -f "$state_file"
	fi

	check_java
	local libs
	libs=$(libs_dir)

	local i bports=() cports=()
	for ((i = 0; i < n; i++)); do
		bports+=($((port + i)))
		cports+=($((port + 100 + i)))
	done
	for p in "${bports[@]}" "${cports[@]}"; do
		port_free "$p" || die "port $p on 127.0.0.1 is already in use; choose another base with --port"
	done

	dir=$(mktemp -d "${TMPDIR:-/tmp}/onceflow-kafka.XXXXXX")
	# A dynamic KRaft quorum: every node is a voter from the start, named
	# with a directory id at format time (--initial-controllers).
	local initial="" cbootstrap="" bootstrap=""
	for ((i = 0; i < n; i++)); do
		initial+="${initial:+,}$((i + 1))@127.0.0.1:${cports[$i]}:$(kafka_uuid)"
		cbootstrap+="${cbootstrap:+,}127.0.0.1:${cports[$i]}"
		bootstrap+="${bootstrap:+,}127.0.0.1:${bports[$i]}"
	done
	local min_isr=1
	[ "$n" -ge 3 ] && min_isr=2

	cat >"$dir/log4j2.properties" <<-EOF
		rootLogger.level = INFO
		rootLogger.appenderRef.out.ref = out
		appender.out.type = Console
		appender.out.name = out
		appender.out.layout.type = PatternLayout
		appender.out.layout.pattern = [%d] %p %m (%c)%n
		logger.kafka.name = kafka
		logger.kafka.level = INFO
		logger.state.name = state.change.logger
		logger.state.level = WARN
	EOF

	local cluster_id
	cluster_id=$(kafka_uuid)
	local cp="$libs/*"
	local jvm=(-Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
		-Djava.awt.headless=true "-Dlog4j2.configurationFile=$dir/log4j2.properties")

	for ((i = 0; i < n; i++)); do
		local id=$((i + 1)) cfg="$dir/node-$((i + 1)).properties"
		cat >"$cfg" <<-EOF
			process.roles=broker,controller
			node.id=$id
			controller.quorum.bootstrap.servers=$cbootstrap
			listeners=PLAINTEXT://127.0.0.1:${bports[$i]},CONTROLLER://127.0.0.1:${cports[$i]}
			advertised.listeners=PLAINTEXT://127.0.0.1:${bports[$i]}
			controller.listener.names=CONTROLLER
			inter.broker.listener.name=PLAINTEXT
			listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
			log.dirs=$dir/data-$id
			num.partitions=1
			default.replication.factor=$n
			min.insync.replicas=$min_isr
			offsets.topic.replication.factor=$n
			offsets.topic.num.partitions=10
			transaction.state.log.replication.factor=$n
			transaction.state.log.min.isr=$min_isr
			transaction.state.log.num.partitions=10
			group.initial.rebalance.delay.ms=0
			auto.create.topics.enable=false
			num.network.threads=2
			num.io.threads=4
			background.threads=4
			log.cleaner.threads=1
			log.cleaner.backoff.ms=1000
			# A deleted topic's files go at once, not a minute later in the
			# middle of whatever is measured then (the bench deletes its
			# topics after every run; Kafka's default waits 60 s).
			log.segment.delete.delay.ms=0
			share.coordinator.state.topic.replication.factor=$n
			share.coordinator.state.topic.min.isr=$min_isr
		EOF
		if ! java "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format \
			-t "$cluster_id" -c "$cfg" --initial-controllers "$initial" >"$dir/format-$id.log" 2>&1; then
			tail -n 20 "$dir/format-$id.log" >&2
			rm -rf "$dir"
			die "formatting KRaft storage for node $id failed (log above)"
		fi
	done

	pids=""
	for ((i = 0; i < n; i++)); do
		local id=$((i + 1))
		setsid java "${jvm[@]}" "-Xlog:gc:file=$dir/gc-$id.log:uptime,time" -cp "$cp" kafka.Kafka "$dir/node-$id.properties" \
			>"$dir/node-$id.log" 2>&1 </dev/null &
		pids+="${pids:+ }$!"
	done
	brokers=$bootstrap
	nodes=$n
	printf 'dir=%q\npids=%q\nbrokers=%q\nnodes=%q\n' "$dir" "$pids" "$brokers" "$nodes" >"$state_file"

	say "started $n node(s) (pids $pids), data in $dir; waiting for metadata and a transaction"
	local probe="$dir/kafkaprobe"
	if ! (cd "$repo" && go build -o "$probe" ./internal/tools/kafkaprobe) >"$dir/probe-build.log" 2>&1; then
		cat "$dir/probe-build.log" >&2
		cmd_down >/dev/null 2>&1 || true
		die "building the readiness probe failed"
	fi
	if ! "$probe" -brokers "$brokers" -nodes "$n" -timeout 150s 2>"$dir/probe.log"; then
		local f
		cat "$dir/probe.log" >&2
		for f in "$dir"/node-*.log; do
			echo "--- tail of $f" >&2
			tail -n 25 "$f" >&2
		done
		cmd_down >/dev/null 2>&1 || true
		die "the broker did not become ready (its log tail is above)"
	fi
	echo "KAFKA_BROKERS=$brokers"
	echo "Apache Kafka $kafka_version (KRaft, $n node(s), pids $pids)"
}

cmd_down() {
	if ! read_state; then
		say "nothing to stop: no cluster was started with this state file ($state_file)"
		return 0
	fi
	local live p waited=0
	live=$(live_pids)
	if [ -z "$live" ]; then
		say "no broker process of $dir is running; removing its data"
	else
		# The data is thrown away, so there is no need for a controlled
		# shutdown; TERM, then KILL what is left after 10 s.
		for p in $live; do kill -TERM "$p" 2>/dev/null || true; done
		while [ -n "$(live_pids)" ] && [ $waited -lt 100 ]; do
			sleep 0.1
			waited=$((waited + 1))
		done
		for p in $(live_pids); do kill -KILL "$p" 2>/dev/null || true; done
		while [ -n "$(live_pids)" ]; do sleep 0.1; done
		say "stopped pids $live"
	fi
	case "$dir" in
	"${TMPDIR:-/tmp}"/onceflow-kafka.*) rm -rf "$dir" ;;
	*) say "not removing unexpected data directory '$dir'" ;;
	esac
	rm -f "$state_file"
}

cmd_status() {
	if ! read_state; then
		echo "no local Kafka cluster (state file $state_file absent)"
		return 0
	fi
	local live
	live=$(live_pids)
	if [ -z "$live" ]; then
		echo "not running: state of a stopped cluster in $dir (run down to clean up)"
		return 1
	fi
	echo "running: KAFKA_BROKERS=$brokers, $nodes node(s), pids $live, data in $dir"
}

case "${1:-}" in
up) shift; cmd_up "$@" ;;
down) shift; cmd_down ;;
status) shift; cmd_status ;;
*) usage ;;
esac
