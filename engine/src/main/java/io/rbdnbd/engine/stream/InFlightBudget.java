package io.rbdnbd.engine.stream;

import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Bytes held by requests in flight on one device or export (WRITE payloads received, READ data
 * being fetched), bounded so that a client cannot make the daemon buffer without limit. A request
 * larger than the whole budget still goes through when nothing else is in flight.
 */
public final class InFlightBudget {
    private final long max;
    private final AtomicLong used = new AtomicLong();
    private final ConcurrentLinkedQueue<Runnable> waiters = new ConcurrentLinkedQueue<>();

    public InFlightBudget(long maxBytes) {
        if (maxBytes <= 0) {
            throw new IllegalArgumentException("in-flight byte budget must be positive: " + maxBytes);
        }
        this.max = maxBytes;
    }

    public boolean tryAcquire(long bytes) {
        if (bytes == 0) {
            return true;
        }
        while (true) {
            long u = used.get();
            if (u != 0 && u + bytes > max) {
                return false;
            }
            if (used.compareAndSet(u, u + bytes)) {
                return true;
            }
        }
    }

    public void release(long bytes) {
        if (bytes == 0) {
            return;
        }
        used.addAndGet(-bytes);
        Runnable w;
        while ((w = waiters.poll()) != null) {
            w.run();
        }
    }

    /**
     * Runs {@code wakeUp} after the next release. The caller retries {@link #tryAcquire} then (and
     * right after registering, since a release may have come in between).
     */
    public void onRelease(Runnable wakeUp) {
        waiters.add(wakeUp);
    }

    public long used() {
        return used.get();
    }

    public long max() {
        return max;
    }

    /** Per-connection view: what one connection holds, given back whole when it ends. */
    public Account account() {
        return new Account();
    }

    public final class Account {
        private final AtomicLong held = new AtomicLong();

        private Account() {
        }

        boolean tryAcquire(long bytes) {
            if (InFlightBudget.this.tryAcquire(bytes)) {
                held.addAndGet(bytes);
                return true;
            }
            return false;
        }

        void release(long bytes) {
            held.addAndGet(-bytes);
            InFlightBudget.this.release(bytes);
        }

        /** The connection ended: requests it dropped unanswered no longer hold bytes. */
        void releaseAll() {
            InFlightBudget.this.release(held.getAndSet(0));
        }

        InFlightBudget budget() {
            return InFlightBudget.this;
        }
    }
}
