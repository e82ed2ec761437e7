package io.onceflow.bench;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

/**
 * Kafka Streams side of the onceflow benchmark.
 *
 * <p>Workloads:
 * <ul>
 *   <li>{@code copy}: stateless; every input record (bytes key, bytes value) is written to the
 *       output topic with the same key and a copy of the value.</li>
 *   <li>{@code wordcount}: stateful per-key count; the input key is the word, the value is
 *       ignored; counts live in a persistent RocksDB store named "counts" (changelogged) and every
 *       input record emits (word, count as 8-byte big-endian long). No repartitioning: the input
 *       is assumed to be partitioned by key already.</li>
 * </ul>
 *
 * <p>Harness protocol: prints exactly one line {@code READY} on stdout when the application
 * reaches RUNNING; on SIGTERM closes (30 s timeout) and prints {@code STOPPED}. Bad flags or the
 * application entering ERROR exit non-zero with a message on stderr. Logs go to stderr at WARN.
 */
public final class KStreamsBench {

    private static final Set<String> FLAGS = Set.of(
            "brokers", "input", "output", "app-id", "workload", "guarantee",
            "commit-interval-ms", "state-dir", "threads");
    private static final List<String> REQUIRED = List.of(
            "brokers", "input", "output", "app-id", "workload", "guarantee",
            "commit-interval-ms", "state-dir");

    private static final String USAGE =
            "usage: java -jar kstreams-bench.jar --brokers HOST:PORT[,...] --input TOPIC --output TOPIC"
            + " --app-id ID --workload copy|wordcount --guarantee exactly_once_v2|at_least_once"
            + " --commit-interval-ms N --state-dir DIR [--threads N]";

    private KStreamsBench() {
    }

    public static void main(String[] args) {
        Map<String, String> opts;
        try {
            opts = parseFlags(args);
        } catch (IllegalArgumentException e) {
            System.err.println("kstreams-bench: " + e.getMessage());
            System.err.println(USAGE);
            System.exit(2);
            return;
        }

        String workload = opts.get("workload");
        Topology topology = switch (workload) {
            case "copy" -> copyTopology(opts.get("input"), opts.get("output"));
            case "wordcount" -> wordcountTopology(opts.get("input"), opts.get("output"));
            default -> throw new AssertionError(workload); // validated in parseFlags
        };

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, opts.get("app-id"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, opts.get("brokers"));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, opts.get("guarantee"));
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, opts.get("commit-interval-ms"));
        props.put(StreamsConfig.STATE_DIR_CONFIG, opts.get("state-dir"));
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, opts.getOrDefault("threads", "1"));
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
        // The benchmark input is produced before the application starts, so a fresh application
        // id must read from the beginning. Kafka Streams already defaults its consumer to
        // "earliest"; it is set explicitly only so the intent is visible.
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // Nothing else is tuned: producer/consumer/RocksDB settings are Kafka Streams defaults.

        KafkaStreams streams = new KafkaStreams(topology, props);

        AtomicBoolean ready = new AtomicBoolean(false);
        AtomicBoolean failed = new AtomicBoolean(false);
        CountDownLatch failure = new CountDownLatch(1);

        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("kstreams-bench: stream thread failed: " + e);
            e.printStackTrace(System.err);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((newState, oldState) -> {
            if (newState == KafkaStreams.State.RUNNING && ready.compareAndSet(false, true)) {
                System.out.println("READY");
                System.out.flush();
            } else if (newState == KafkaStreams.State.ERROR) {
                failed.set(true);
                failure.countDown();
            }
        });

        Thread hook = new Thread(() -> {
            boolean closed = streams.close(Duration.ofSeconds(30));
            if (failed.get()) {
                return; // ERROR path: main() already reported and chose the exit status
            }
            if (!closed) {
                System.err.println("kstreams-bench: close() did not finish within 30s");
                System.err.flush();
                Runtime.getRuntime().halt(1);
            }
            System.out.println("STOPPED");
            System.out.flush();
            System.err.flush();
            // A clean stop on SIGTERM exits 0 (rather than the JVM's default 143 for SIGTERM).
            Runtime.getRuntime().halt(0);
        }, "kstreams-bench-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);

        try {
            streams.start();
        } catch (RuntimeException e) {
            failed.set(true);
            System.err.println("kstreams-bench: failed to start: " + e);
            System.exit(1);
        }

        // Block until the application enters ERROR; normal termination is via SIGTERM, which
        // runs the shutdown hook above.
        try {
            failure.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        System.err.println("kstreams-bench: Kafka Streams entered state ERROR (app-id "
                + opts.get("app-id") + ", workload " + workload + "); exiting");
        System.exit(1);
    }

    /** copy: same key, value copied (the bytes are touched once), no state. */
    static Topology copyTopology(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .mapValues(v -> v == null ? null : Arrays.copyOf(v, v.length))
                .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
        return builder.build();
    }

    /**
     * wordcount: per-key count in a persistent RocksDB store "counts" (changelog on, the
     * default). Caching is disabled on the store so every update is forwarded, i.e. one output
     * record per input record. groupByKey() without a preceding key change does not repartition.
     */
    static Topology wordcountTopology(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, byte[]> words =
                builder.stream(input, Consumed.with(Serdes.String(), Serdes.ByteArray()));
        words.groupByKey()
                .count(Materialized.<String, Long>as(Stores.persistentKeyValueStore("counts"))
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.Long())
                        .withCachingDisabled())
                .toStream()
                .mapValues(n -> ByteBuffer.allocate(Long.BYTES).putLong(n).array())
                .to(output, Produced.with(Serdes.String(), Serdes.ByteArray()));
        return builder.build();
    }

    static Map<String, String> parseFlags(String[] args) {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("-h") || a.equals("--help")) {
                throw new IllegalArgumentException("help requested");
            }
            if (!a.startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument: " + a);
            }
            String name;
            String value;
            int eq = a.indexOf('=');
            if (eq >= 0) {
                name = a.substring(2, eq);
                value = a.substring(eq + 1);
            } else {
                name = a.substring(2);
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException("flag --" + name + " needs a value");
                }
                value = args[++i];
            }
            if (!FLAGS.contains(name)) {
                throw new IllegalArgumentException("unknown flag --" + name);
            }
            if (value.isEmpty()) {
                throw new IllegalArgumentException("flag --" + name + " has an empty value");
            }
            if (opts.put(name, value) != null) {
                throw new IllegalArgumentException("flag --" + name + " given more than once");
            }
        }
        for (String r : REQUIRED) {
            if (!opts.containsKey(r)) {
                throw new IllegalArgumentException("missing required flag --" + r);
            }
        }
        String w = opts.get("workload");
        if (!w.equals("copy") && !w.equals("wordcount")) {
            throw new IllegalArgumentException("--workload must be copy or wordcount, got " + w);
        }
        String g = opts.get("guarantee");
        if (!g.equals(StreamsConfig.EXACTLY_ONCE_V2) && !g.equals(StreamsConfig.AT_LEAST_ONCE)) {
            throw new IllegalArgumentException(
                    "--guarantee must be exactly_once_v2 or at_least_once, got " + g);
        }
        parseNonNegativeLong("commit-interval-ms", opts.get("commit-interval-ms"));
        if (opts.containsKey("threads") && parseNonNegativeLong("threads", opts.get("threads")) < 1) {
            throw new IllegalArgumentException("--threads must be at least 1");
        }
        return opts;
    }

    private static long parseNonNegativeLong(String name, String v) {
        long n;
        try {
            n = Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + name + " must be an integer, got " + v);
        }
        if (n < 0) {
            throw new IllegalArgumentException("--" + name + " must be >= 0, got " + v);
        }
        return n;
    }
}
