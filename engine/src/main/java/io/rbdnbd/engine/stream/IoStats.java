package io.rbdnbd.engine.stream;

import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.nativeio.Errno;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.LongSupplier;

/**
 * I/O statistics of one device or export, shared by all its connections and recorded by their
 * {@link RequestDispatcher}s for every request, the ones answered with an error without reaching
 * the backend included. Recording is a few {@link LongAdder} increments and two clock reads per
 * request: no lock, no allocation. {@link #snapshot()} reads it all for JMX and
 * {@code rbd-nbd stats}: counters and latency percentiles since creation, rates over the last
 * 10 whole seconds.
 *
 * <p>Commands are named {@code read}, {@code write}, {@code flush}, {@code trim},
 * {@code write-zeroes}, {@code block-status}, {@code cache}, and {@code other} for a command the
 * decoder does not know (rejected EINVAL).
 */
public final class IoStats {
    /** Command names in the order every snapshot map lists them. */
    static final String[] COMMANDS = {"read", "write", "flush", "trim", "write-zeroes", "block-status", "cache", "other"};
    private static final int READ = 0;
    private static final int WRITE = 1;
    private static final int OTHER = COMMANDS.length - 1;
    /** Errnos 1..255 are counted each on its own; anything else (not an errno) as "other". */
    private static final int ERRNO_SLOTS = 256;

    // RateWindow counters
    private static final int READ_OPS = 0;
    private static final int WRITE_OPS = 1;
    private static final int READ_BYTES = 2;
    private static final int WRITE_BYTES = 3;

    private final LongSupplier nanoClock;
    private final LongAdder[] requests = adders(COMMANDS.length);
    private final LongAdder[] bytes = adders(COMMANDS.length);
    private final LongAdder[] errors = adders(COMMANDS.length);
    /** Errors are rare: a plain atomic per errno is cheap enough. */
    private final AtomicLongArray errorsByErrno = new AtomicLongArray(ERRNO_SLOTS);
    /** Requests dispatched; in flight is this less the requests answered (one increment per request, not two). */
    private final LongAdder dispatched = new LongAdder();
    private final LatencyHistogram latency = new LatencyHistogram();
    private final RateWindow rates = new RateWindow(4);

    public IoStats() {
        this(System::nanoTime);
    }

    /** @param nanoClock a monotonic clock in nanoseconds, as {@link System#nanoTime()} (tests pass their own) */
    public IoStats(LongSupplier nanoClock) {
        this.nanoClock = nanoClock;
    }

    /**
     * A request was dispatched: counts it in flight until {@link #completed}. Returns its start
     * time, to pass to {@link #completed}.
     */
    public long started() {
        dispatched.increment();
        return nanoClock.getAsLong();
    }

    /**
     * The request started at {@code startNanos} has its reply.
     *
     * @param command an {@code Nbd.CMD_*} value (unknown ones count as "other")
     * @param length  the request's length; counted in bytes only when it succeeded
     * @param errno   0 for success, else the errno as the backend (or the dispatcher's own checks)
     *                reported it, before {@link Nbd#wireError} folds it into the few NBD allows
     */
    public void completed(int command, long length, int errno, long startNanos) {
        long now = nanoClock.getAsLong();
        int c = slot(command);
        requests[c].increment();
        if (errno == 0) {
            bytes[c].add(length);
        } else {
            errors[c].increment();
            errorsByErrno.incrementAndGet(errno > 0 && errno < ERRNO_SLOTS ? errno : 0);
        }
        latency.record(Math.max(0, now - startNanos) / 1000);
        if (c == READ || c == WRITE) {
            rates.add(now, c == READ ? READ_OPS : WRITE_OPS, 1);
            if (errno == 0) {
                rates.add(now, c == READ ? READ_BYTES : WRITE_BYTES, length);
            }
        }
    }

    /** Requests dispatched and not answered yet, on every connection. */
    public long inFlight() {
        long answered = 0;
        for (LongAdder r : requests) {
            answered += r.sum();
        }
        return Math.max(0, dispatched.sum() - answered); // answered first: a reply's request was dispatched before
    }

    /**
     * Everything at once: counters and latency percentiles since this was created, rates over the
     * last 10 whole seconds. Each counter is read once; requests
     * answered meanwhile may show in some and not others.
     */
    public Snapshot snapshot() {
        Map<String, Long> req = new LinkedHashMap<>();
        Map<String, Long> byt = new LinkedHashMap<>();
        Map<String, Long> err = new LinkedHashMap<>();
        for (int c = 0; c < COMMANDS.length; c++) {
            req.put(COMMANDS[c], requests[c].sum());
            byt.put(COMMANDS[c], bytes[c].sum());
            err.put(COMMANDS[c], errors[c].sum());
        }
        Map<String, Long> byErrno = new LinkedHashMap<>();
        for (int e = 1; e < ERRNO_SLOTS; e++) {
            long n = errorsByErrno.get(e);
            if (n != 0) {
                byErrno.merge(Errno.name(e), n, Long::sum);
            }
        }
        if (errorsByErrno.get(0) != 0) {
            byErrno.merge("other", errorsByErrno.get(0), Long::sum);
        }
        long[] window = rates.sums(nanoClock.getAsLong());
        long[] counts = latency.counts();
        return new Snapshot(req, byt, err, byErrno, inFlight(),
                (double) window[READ_OPS] / RateWindow.SECONDS, (double) window[WRITE_OPS] / RateWindow.SECONDS,
                (double) window[READ_BYTES] / RateWindow.SECONDS, (double) window[WRITE_BYTES] / RateWindow.SECONDS,
                LatencyHistogram.percentile(counts, 0.50), LatencyHistogram.percentile(counts, 0.90),
                LatencyHistogram.percentile(counts, 0.99), LatencyHistogram.percentile(counts, 0.999));
    }

    /**
     * The statistics at one moment. Counters and latency percentiles are cumulative since the
     * {@link IoStats} was created (the device mapped, the export started); rates are recent.
     *
     * @param requests        replies sent, by command, errors included
     * @param bytes           lengths of the requests that succeeded, by command (for block-status and
     *                        cache the range asked about; 0 for flush)
     * @param errors          error replies, by command
     * @param errorsByErrno   error replies by errno name ("EIO", "ETIMEDOUT", "errno 42"), as the
     *                        backend reported them, before folding into NBD's few: only errnos seen
     * @param inFlight        requests dispatched and not yet answered
     * @param readIops        READ replies per second over the last 10 whole seconds (the current
     *                        one left out), errors included; lower during the first 10 s
     * @param writeIops       WRITE replies per second, likewise (not trim or write-zeroes)
     * @param readBytesPerSecond  bytes of successful READs per second, likewise
     * @param writeBytesPerSecond bytes of successful WRITEs per second, likewise
     * @param latencyP50Micros  median time from dispatch to reply (the backend's answer, not the
     *                          socket write), µs, over every request since start, within 3.1 %
     * @param latencyP90Micros  the 90th percentile, likewise
     * @param latencyP99Micros  the 99th percentile, likewise
     * @param latencyP999Micros the 99.9th percentile, likewise
     */
    public record Snapshot(Map<String, Long> requests, Map<String, Long> bytes, Map<String, Long> errors,
                           Map<String, Long> errorsByErrno, long inFlight,
                           double readIops, double writeIops, double readBytesPerSecond, double writeBytesPerSecond,
                           long latencyP50Micros, long latencyP90Micros, long latencyP99Micros,
                           long latencyP999Micros) {

        /** The maps are copied: their order (commands as listed above, errnos by value) is kept. */
        public Snapshot {
            requests = frozen(requests);
            bytes = frozen(bytes);
            errors = frozen(errors);
            errorsByErrno = frozen(errorsByErrno);
        }

        /** Replies sent, every command together. */
        public long totalRequests() {
            return requests.values().stream().mapToLong(Long::longValue).sum();
        }

        /** Error replies, every command together. */
        public long totalErrors() {
            return errors.values().stream().mapToLong(Long::longValue).sum();
        }

        private static Map<String, Long> frozen(Map<String, Long> m) {
            return Collections.unmodifiableMap(new LinkedHashMap<>(m));
        }
    }

    /** The command names, in the order snapshot maps list them (for renderings that lost the order). */
    public static List<String> commandNames() {
        return List.of(COMMANDS);
    }

    /** The rate window, in seconds: rates are averaged over this many whole seconds. */
    public static int rateWindowSeconds() {
        return RateWindow.SECONDS;
    }

    private static int slot(int command) {
        return switch (command) {
            case Nbd.CMD_READ -> READ;
            case Nbd.CMD_WRITE -> WRITE;
            case Nbd.CMD_FLUSH -> 2;
            case Nbd.CMD_TRIM -> 3;
            case Nbd.CMD_WRITE_ZEROES -> 4;
            case Nbd.CMD_BLOCK_STATUS -> 5;
            case Nbd.CMD_CACHE -> 6;
            default -> OTHER;
        };
    }

    private static LongAdder[] adders(int n) {
        LongAdder[] a = new LongAdder[n];
        for (int i = 0; i < n; i++) {
            a[i] = new LongAdder();
        }
        return a;
    }
}
