package io.rbdnbd.engine.stream;

import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.nativeio.Errno;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.IntStream;
import java.util.stream.LongStream;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class IoStatsTest {
    private static final long SECOND = 1_000_000_000L;

    /** One request on {@code stats} whose reply comes {@code micros} after dispatch on {@code clock}. */
    private static void request(IoStats stats, AtomicLong clock, int command, long length, int errno, long micros) {
        long start = stats.started();
        clock.addAndGet(micros * 1000);
        stats.completed(command, length, errno, start);
    }

    // ---- the histogram's buckets ----

    @ParameterizedTest(name = "{0} µs falls in a bucket that holds it")
    @CsvSource({"0", "1", "15", "16", "17", "31", "32", "33", "63", "64", "100", "999", "1000", "4096", "65535",
            "1000000", "33554431", "33554432", "60000000", "67108863"})
    void everyLatencyFallsInTheBucketThatCoversIt(long micros) {
        int b = LatencyHistogram.bucket(micros);
        long low = LatencyHistogram.lowerBound(b);
        long width = LatencyHistogram.width(b);
        assertTrue(low <= micros && micros < low + width, micros + " in bucket " + b + " [" + low + ", "
                + (low + width) + ")");
        assertTrue(width == 1 || width * 16 <= low, "a bucket spans at most 1/16 of its values: " + b);
    }

    @Test
    void bucketsAreContiguousAndLongerLatenciesCountInTheLast() {
        for (int b = 1; b < LatencyHistogram.BUCKETS; b++) {
            assertEquals(LatencyHistogram.lowerBound(b - 1) + LatencyHistogram.width(b - 1),
                    LatencyHistogram.lowerBound(b), "bucket " + b);
        }
        assertEquals(LatencyHistogram.BUCKETS - 1, LatencyHistogram.bucket(1L << 26));
        assertEquals(LatencyHistogram.BUCKETS - 1, LatencyHistogram.bucket(Long.MAX_VALUE));
        assertEquals(0, LatencyHistogram.bucket(-5));
        assertEquals(1L << 26, LatencyHistogram.lowerBound(LatencyHistogram.BUCKETS - 1)
                + LatencyHistogram.width(LatencyHistogram.BUCKETS - 1), "the last bucket ends at 67 s");
    }

    // ---- percentiles of known latencies ----

    static Stream<Arguments> latencies() {
        return Stream.of(
                Arguments.of("1..1000 µs", LongStream.rangeClosed(1, 1000).toArray(), 500, 900, 990, 999),
                Arguments.of("all 250 µs", LongStream.generate(() -> 250).limit(100).toArray(), 250, 250, 250, 250),
                Arguments.of("99 % 100 µs, 1 % 50 ms",
                        LongStream.concat(LongStream.generate(() -> 100).limit(990),
                                LongStream.generate(() -> 50_000).limit(10)).toArray(), 100, 100, 100, 50_000),
                Arguments.of("1 ms..10 s in ms steps", LongStream.rangeClosed(1, 10_000).map(ms -> ms * 1000).toArray(),
                        5_000_000, 9_000_000, 9_900_000, 9_990_000),
                Arguments.of("one request of 3 µs", new long[] {3}, 3, 3, 3, 3),
                Arguments.of("none", new long[0], 0, 0, 0, 0));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("latencies")
    void percentilesAreWithinTheBucketError(String name, long[] micros, long p50, long p90, long p99, long p999) {
        AtomicLong clock = new AtomicLong(123 * SECOND);
        IoStats stats = new IoStats(clock::get);
        for (long m : micros) {
            request(stats, clock, Nbd.CMD_READ, 4096, 0, m);
        }
        IoStats.Snapshot s = stats.snapshot();
        assertClose(p50, s.latencyP50Micros(), "p50");
        assertClose(p90, s.latencyP90Micros(), "p90");
        assertClose(p99, s.latencyP99Micros(), "p99");
        assertClose(p999, s.latencyP999Micros(), "p99.9");
    }

    /** Off by at most half a bucket: 1/32 of the value, and under 32 µs by at most 1 µs. */
    private static void assertClose(long expected, long actual, String what) {
        long tolerance = Math.max(1, expected / 32);
        assertTrue(Math.abs(expected - actual) <= tolerance, what + ": expected " + expected + " ± " + tolerance
                + ", got " + actual);
    }

    // ---- counters ----

    /** command, length, errno: what is recorded; then the expected requests, bytes and errors. */
    static Stream<Arguments> counted() {
        return Stream.of(
                Arguments.of("a read and a write", List.of(
                                new long[] {Nbd.CMD_READ, 4096, 0}, new long[] {Nbd.CMD_WRITE, 512, 0}),
                        Map.of("read", 1L, "write", 1L), Map.of("read", 4096L, "write", 512L), Map.of()),
                Arguments.of("failed requests count, their bytes do not", List.of(
                                new long[] {Nbd.CMD_WRITE, 8192, 0}, new long[] {Nbd.CMD_WRITE, 4096, Errno.EIO},
                                new long[] {Nbd.CMD_WRITE, 4096, Errno.ENOSPC}),
                        Map.of("write", 3L), Map.of("write", 8192L), Map.of("write", 2L)),
                Arguments.of("every command by its name", List.of(
                                new long[] {Nbd.CMD_FLUSH, 0, 0}, new long[] {Nbd.CMD_TRIM, 1 << 20, 0},
                                new long[] {Nbd.CMD_WRITE_ZEROES, 65536, 0}, new long[] {Nbd.CMD_BLOCK_STATUS, 1 << 30, 0},
                                new long[] {Nbd.CMD_CACHE, 4096, 0}),
                        Map.of("flush", 1L, "trim", 1L, "write-zeroes", 1L, "block-status", 1L, "cache", 1L),
                        Map.of("trim", 1L << 20, "write-zeroes", 65536L, "block-status", 1L << 30, "cache", 4096L),
                        Map.of()),
                Arguments.of("an unknown command is other", List.of(new long[] {77, 0, Errno.EINVAL}),
                        Map.of("other", 1L), Map.of(), Map.of("other", 1L)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("counted")
    void countersByCommand(String name, List<long[]> recorded, Map<String, Long> requests, Map<String, Long> bytes,
                           Map<String, Long> errors) {
        AtomicLong clock = new AtomicLong();
        IoStats stats = new IoStats(clock::get);
        for (long[] r : recorded) {
            request(stats, clock, (int) r[0], r[1], (int) r[2], 10);
        }
        IoStats.Snapshot s = stats.snapshot();
        assertEquals(withZeroes(requests), s.requests());
        assertEquals(withZeroes(bytes), s.bytes());
        assertEquals(withZeroes(errors), s.errors());
        assertEquals(List.of(IoStats.COMMANDS), new ArrayList<>(s.requests().keySet()), "every command, in order");
        assertEquals(recorded.size(), s.totalRequests());
        assertEquals(0, s.inFlight());
    }

    private static Map<String, Long> withZeroes(Map<String, Long> nonZero) {
        Map<String, Long> all = new LinkedHashMap<>();
        for (String c : IoStats.COMMANDS) {
            all.put(c, nonZero.getOrDefault(c, 0L));
        }
        return all;
    }

    @Test
    void errorsByErrnoNameInErrnoOrder() {
        AtomicLong clock = new AtomicLong();
        IoStats stats = new IoStats(clock::get);
        int[] errnos = {Errno.ETIMEDOUT, Errno.EIO, Errno.ESHUTDOWN, Errno.ETIMEDOUT, 200, Errno.EIO, Errno.ETIMEDOUT,
                -3, 4096};
        for (int e : errnos) {
            request(stats, clock, Nbd.CMD_WRITE, 4096, e, 5);
        }
        IoStats.Snapshot s = stats.snapshot();
        Map<String, Long> expected = new LinkedHashMap<>();
        expected.put("EIO", 2L);
        expected.put("ESHUTDOWN", 1L);
        expected.put("ETIMEDOUT", 3L);
        expected.put("errno 200", 1L);
        expected.put("other", 2L); // not an errno
        assertEquals(expected, s.errorsByErrno());
        assertEquals(List.copyOf(expected.keySet()), List.copyOf(s.errorsByErrno().keySet()));
        assertEquals(errnos.length, s.totalErrors());
    }

    @Test
    void inFlightCountsDispatchedRequestsUntilTheirReply() {
        IoStats stats = new IoStats();
        long[] starts = IntStream.range(0, 5).mapToLong(i -> stats.started()).toArray();
        assertEquals(5, stats.snapshot().inFlight());
        for (int i = 0; i < 3; i++) {
            stats.completed(Nbd.CMD_READ, 512, 0, starts[i]);
        }
        assertEquals(2, stats.inFlight());
        stats.completed(Nbd.CMD_FLUSH, 0, Errno.EIO, starts[3]);
        stats.completed(Nbd.CMD_FLUSH, 0, 0, starts[4]);
        assertEquals(0, stats.snapshot().inFlight());
    }

    // ---- rates ----

    /** A quarter into {@code second}, READs and WRITEs of 4 KiB, the first {@code failedWrites} writes failing. */
    private record Burst(long second, int reads, int writes, int failedWrites) {
    }

    static Stream<Arguments> rates() {
        List<Burst> steady = LongStream.range(0, 10).mapToObj(s -> new Burst(s, 100, 50, 0)).toList();
        return Stream.of(
                Arguments.of("steady for 10 s, read at 10.0 s", steady, 10 * SECOND, 100.0, 50.0, 50.0 * 4096),
                Arguments.of("the current second is left out", steady, 10 * SECOND + SECOND / 2, 100.0, 50.0,
                        50.0 * 4096),
                Arguments.of("the window slides", steady, 12 * SECOND, 80.0, 40.0, 40.0 * 4096),
                Arguments.of("idle for longer than the window", steady, 25 * SECOND, 0.0, 0.0, 0.0),
                Arguments.of("half-way through the first 10 s", steady, 5 * SECOND, 50.0, 25.0, 25.0 * 4096),
                Arguments.of("a slot reused 11 s later counts the new second only",
                        List.of(new Burst(0, 1000, 0, 0), new Burst(11, 30, 0, 0)), 12 * SECOND, 3.0, 0.0, 0.0),
                Arguments.of("failed writes count as operations, not bytes",
                        List.of(new Burst(3, 0, 10, 4)), 5 * SECOND, 0.0, 1.0, 6.0 * 4096 / 10));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("rates")
    void ratesOverTheLastTenWholeSeconds(String name, List<Burst> bursts, long at, double readIops, double writeIops,
                                         double writeBytesPerSecond) {
        for (long origin : new long[] {1000 * SECOND, -7 * SECOND}) { // nanoTime may be negative
            AtomicLong clock = new AtomicLong();
            IoStats stats = new IoStats(clock::get);
            for (Burst b : bursts) {
                clock.set(origin + b.second() * SECOND + SECOND / 4);
                for (int i = 0; i < b.reads(); i++) {
                    request(stats, clock, Nbd.CMD_READ, 4096, 0, 0);
                }
                for (int i = 0; i < b.writes(); i++) {
                    boolean fails = i < b.failedWrites();
                    request(stats, clock, Nbd.CMD_WRITE, 4096, fails ? Errno.EIO : 0, 0);
                }
            }
            clock.set(origin + at);
            IoStats.Snapshot s = stats.snapshot();
            assertEquals(readIops, s.readIops(), 1e-9, "read IOPS, origin " + origin);
            assertEquals(writeIops, s.writeIops(), 1e-9, "write IOPS, origin " + origin);
            assertEquals(readIops * 4096, s.readBytesPerSecond(), 1e-6, "read bytes/s, origin " + origin);
            assertEquals(writeBytesPerSecond, s.writeBytesPerSecond(), 1e-6, "write bytes/s, origin " + origin);
        }
    }

    @Test
    void theSnapshotIsImmutable() {
        IoStats.Snapshot s = new IoStats().snapshot();
        assertThrows(UnsupportedOperationException.class, () -> s.requests().put("read", 1L));
        assertThrows(UnsupportedOperationException.class, () -> s.errorsByErrno().put("EIO", 1L));
    }
}
