package io.rbdnbd.engine.stream;

import java.util.concurrent.atomic.LongAdder;

/**
 * Latencies in microseconds, counted in fixed log-linear buckets: 0..15 µs one bucket per µs,
 * then each power of two [2^e, 2^(e+1)) split into 16 equal buckets, up to 2^26 µs (67 s); longer
 * latencies count in the last bucket. A percentile is reported as the middle of its bucket, so
 * it is off by at most 1/32 (3.1 %) of the true value, or 1 µs below 32 µs. Fixed buckets keep
 * {@link #record} to one index computation and one {@link LongAdder} increment: no lock, no
 * allocation, and threads recording at once rarely touch the same memory.
 */
final class LatencyHistogram {
    /** log2 of the linear buckets per power of two. */
    static final int SUB_BITS = 4;
    static final int SUB_BUCKETS = 1 << SUB_BITS;
    /** The last power of two counted: [2^25, 2^26) µs, 33.5 s to 67.1 s. */
    static final int MAX_EXPONENT = 25;
    /** Group 0 is 0..15 µs; group g >= 1 is [2^(g+3), 2^(g+4)). */
    static final int BUCKETS = (MAX_EXPONENT - SUB_BITS + 2) * SUB_BUCKETS;

    private final LongAdder[] counts = new LongAdder[BUCKETS];

    LatencyHistogram() {
        for (int i = 0; i < BUCKETS; i++) {
            counts[i] = new LongAdder();
        }
    }

    void record(long micros) {
        counts[bucket(micros)].increment();
    }

    /** The counts of every bucket, each read once (not one atomic snapshot: requests keep coming). */
    long[] counts() {
        long[] c = new long[BUCKETS];
        for (int i = 0; i < BUCKETS; i++) {
            c[i] = counts[i].sum();
        }
        return c;
    }

    static int bucket(long micros) {
        if (micros < SUB_BUCKETS) {
            return (int) Math.max(micros, 0);
        }
        int e = 63 - Long.numberOfLeadingZeros(micros);
        if (e > MAX_EXPONENT) {
            return BUCKETS - 1;
        }
        int sub = (int) (micros >>> (e - SUB_BITS)) & (SUB_BUCKETS - 1);
        return (e - SUB_BITS + 1) * SUB_BUCKETS + sub;
    }

    /** The smallest latency in {@code bucket}, in µs. */
    static long lowerBound(int bucket) {
        int group = bucket / SUB_BUCKETS;
        int sub = bucket % SUB_BUCKETS;
        if (group == 0) {
            return sub;
        }
        int e = group + SUB_BITS - 1;
        return (1L << e) + ((long) sub << (e - SUB_BITS));
    }

    /** How many µs {@code bucket} spans. */
    static long width(int bucket) {
        int group = bucket / SUB_BUCKETS;
        return group == 0 ? 1 : 1L << (group - 1);
    }

    /**
     * The latency (µs, middle of its bucket) that a fraction {@code q} (0..1] of the counted ones
     * do not exceed; 0 when nothing was counted.
     */
    static long percentile(long[] counts, double q) {
        long total = 0;
        for (long c : counts) {
            total += c;
        }
        if (total == 0) {
            return 0;
        }
        long rank = Math.max(1, (long) Math.ceil(q * total));
        long seen = 0;
        for (int i = 0; i < counts.length; i++) {
            seen += counts[i];
            if (seen >= rank) {
                return lowerBound(i) + width(i) / 2;
            }
        }
        throw new IllegalStateException("not reached: the counts sum to " + total);
    }
}
