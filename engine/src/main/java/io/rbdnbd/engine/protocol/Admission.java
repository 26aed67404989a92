package io.rbdnbd.engine.protocol;

/**
 * Admits the bytes a request will hold before {@link RequestDecoder} reads its payload off the
 * socket (WRITE) or emits it (READ), so memory is taken before it is used and a full budget stops
 * the reading (TCP backpressure). The engine's per-connection account of its in-flight budget.
 */
public interface Admission {
    /** Admits nothing but always says yes: for tests of the framing alone. */
    Admission UNLIMITED = new Admission() {
        @Override
        public boolean tryAcquire(long bytes) {
            return true;
        }

        @Override
        public void onRelease(Runnable wakeUp) {
            wakeUp.run();
        }
    };

    /** Takes {@code bytes}; false when they do not fit now. */
    boolean tryAcquire(long bytes);

    /**
     * Runs {@code wakeUp} (on any thread) once bytes are next given back. After a failed
     * {@link #tryAcquire}: register, then try once more, since a release may have come in between.
     */
    void onRelease(Runnable wakeUp);
}
