package io.rbdnbd.engine.stream;

import io.rbdnbd.engine.protocol.Admission;

import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Bytes held by requests in flight on one device or export (WRITE payloads from before they are
 * read off the socket, READ data until its reply is written), bounded so that no client can make
 * the daemon buffer without limit. Each connection takes its share through an {@link Account},
 * bounded too, so one connection cannot hold the whole budget. A request larger than a bound still
 * goes through when nothing else is held under it (a single request is bounded by max-payload).
 *
 * <p>A budget may draw on a parent too (the daemon's, shared by all its devices): bytes are then
 * held in both, so the devices together stay within the parent's bound whatever each may hold.
 */
public final class InFlightBudget {
    private final long max;
    private final InFlightBudget parent;
    private final AtomicLong used = new AtomicLong();
    private final ConcurrentLinkedQueue<Runnable> waiters = new ConcurrentLinkedQueue<>();

    public InFlightBudget(long maxBytes) {
        this(maxBytes, null);
    }

    /** @param parent a budget this one also draws on, or null */
    public InFlightBudget(long maxBytes, InFlightBudget parent) {
        if (maxBytes <= 0) {
            throw new IllegalArgumentException("in-flight byte budget must be positive: " + maxBytes);
        }
        this.max = maxBytes;
        this.parent = parent;
    }

    private boolean tryAcquire(long bytes) {
        while (true) {
            long u = used.get();
            if (u != 0 && u + bytes > max) {
                return false;
            }
            if (used.compareAndSet(u, u + bytes)) {
                break;
            }
        }
        if (parent != null && !parent.tryAcquire(bytes)) {
            release(bytes, false);
            return false;
        }
        return true;
    }

    private void release(long bytes) {
        release(bytes, true);
    }

    private void release(long bytes, boolean toParent) {
        if (bytes == 0) {
            return;
        }
        used.addAndGet(-bytes);
        if (toParent && parent != null) {
            parent.release(bytes);
        }
        Runnable w;
        while ((w = waiters.poll()) != null) {
            w.run();
        }
    }

    /**
     * Runs {@code wakeUp} after the next release on this budget or its parent (either may be what
     * is full). The caller retries then (and right after registering, since a release may have
     * come in between); a wake-up may come more than once.
     */
    void onRelease(Runnable wakeUp) {
        waiters.add(wakeUp);
        if (parent != null) {
            parent.onRelease(wakeUp);
        }
    }

    public long used() {
        return used.get();
    }

    public long max() {
        return max;
    }

    /** One connection's share, at most {@code maxBytes} of this budget, given back whole when it ends. */
    public Account account(long maxBytes) {
        if (maxBytes <= 0) {
            throw new IllegalArgumentException("per-connection in-flight byte budget must be positive: " + maxBytes);
        }
        return new Account(maxBytes);
    }

    /**
     * What one connection holds. Once {@link #close closed} (the connection's stream ended) it takes
     * nothing more and gives back nothing twice: stages upstream of the end may still run for a
     * moment after it, and must not take bytes that nobody would return.
     */
    public final class Account implements Admission {
        private final long max;
        private long held;
        private boolean closed;

        private Account(long max) {
            this.max = max;
        }

        /** Takes {@code bytes} when they fit in this account and in the budget; false otherwise (or once closed). */
        @Override
        public boolean tryAcquire(long bytes) {
            if (bytes == 0) {
                return true;
            }
            synchronized (this) {
                if (closed || (held != 0 && held + bytes > max) || !InFlightBudget.this.tryAcquire(bytes)) {
                    return false;
                }
                held += bytes;
                return true;
            }
        }

        /** Gives back what one request held; nothing once closed (close gave back everything). */
        public void release(long bytes) {
            if (bytes == 0) {
                return;
            }
            synchronized (this) {
                if (closed) {
                    return;
                }
                held -= bytes;
            }
            InFlightBudget.this.release(bytes);
        }

        /**
         * Runs {@code wakeUp} once bytes are next given back to this budget. After a failed
         * {@link #tryAcquire}: register, then try once more, since a release may have come in between.
         */
        @Override
        public void onRelease(Runnable wakeUp) {
            InFlightBudget.this.onRelease(wakeUp);
        }

        /** The connection ended: everything it holds goes back, and it takes nothing more. */
        public void close() {
            long h;
            synchronized (this) {
                if (closed) {
                    return;
                }
                closed = true;
                h = held;
                held = 0;
            }
            InFlightBudget.this.release(h);
        }

        public synchronized long held() {
            return held;
        }
    }
}
