package io.rbdnbd.engine.stream;

import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.atomic.LongAdder;

/**
 * A few counters per second over the last {@link #SECONDS} whole seconds, for rates. A ring of
 * {@code SECONDS + 1} slots (the current second and the ones before it), each the counters of one
 * second. Nothing ticks: the first count of a new second replaces the slot's stale second (one
 * small allocation per slot per second, none per count), and a read skips slots older than the
 * window, so a device idle for a minute reads as zero without anything having run meanwhile.
 */
final class RateWindow {
    /** The window rates are averaged over, in whole seconds; the current second is left out. */
    static final int SECONDS = 10;
    private static final long NANOS_PER_SECOND = 1_000_000_000L;

    /** The counters of one second; replaced whole when the slot is reused. */
    private static final class Second {
        final long second;
        final LongAdder[] counters;

        Second(long second, int n) {
            this.second = second;
            this.counters = new LongAdder[n];
            for (int i = 0; i < n; i++) {
                counters[i] = new LongAdder();
            }
        }
    }

    private final int counters;
    private final AtomicReferenceArray<Second> ring = new AtomicReferenceArray<>(SECONDS + 1);

    RateWindow(int counters) {
        this.counters = counters;
    }

    /** Adds {@code n} to counter {@code counter} of the second {@code nowNanos} falls in. */
    void add(long nowNanos, int counter, long n) {
        long sec = Math.floorDiv(nowNanos, NANOS_PER_SECOND);
        int slot = slot(sec);
        while (true) {
            Second s = ring.get(slot);
            if (s != null && s.second == sec) {
                s.counters[counter].add(n);
                return;
            }
            if (s != null && s.second > sec) {
                return; // a count for a second already gone from the ring (its thread was held up): too late
            }
            ring.compareAndSet(slot, s, new Second(sec, counters)); // the loser of a race takes the winner's
        }
    }

    /** Each counter summed over the {@link #SECONDS} whole seconds before the one {@code nowNanos} is in. */
    long[] sums(long nowNanos) {
        long now = Math.floorDiv(nowNanos, NANOS_PER_SECOND);
        long[] sums = new long[counters];
        for (long sec = now - SECONDS; sec < now; sec++) {
            Second s = ring.get(slot(sec));
            if (s != null && s.second == sec) {
                for (int i = 0; i < counters; i++) {
                    sums[i] += s.counters[i].sum();
                }
            }
        }
        return sums;
    }

    private static int slot(long second) {
        return (int) Math.floorMod(second, (long) SECONDS + 1);
    }
}
