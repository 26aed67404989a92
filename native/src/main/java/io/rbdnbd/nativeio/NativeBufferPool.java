package io.rbdnbd.nativeio;

import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Native I/O buffers in power-of-two size classes from 4 KiB up, kept for reuse up to a byte
 * limit. malloc'd memory (not direct ByteBuffers): the engine's in-flight byte budget already
 * bounds what is lent out, so the JVM's direct-memory limit need not be sized for it.
 */
public final class NativeBufferPool {
    private static final int MIN_SHIFT = 12;
    private static final int CLASSES = 31 - MIN_SHIFT;

    private final ConcurrentLinkedQueue<NativeBuffer>[] free;
    private final long retainLimit;
    private final AtomicLong retained = new AtomicLong();

    /** @param retainLimit bytes of idle buffers kept for reuse; more are freed on release */
    @SuppressWarnings("unchecked")
    public NativeBufferPool(long retainLimit) {
        this.retainLimit = retainLimit;
        this.free = new ConcurrentLinkedQueue[CLASSES];
        for (int i = 0; i < CLASSES; i++) {
            free[i] = new ConcurrentLinkedQueue<>();
        }
    }

    /** A buffer of at least {@code length} bytes (at most 1 GiB). */
    public NativeBuffer acquire(int length) {
        int cls = sizeClass(length);
        NativeBuffer b = free[cls].poll();
        if (b != null) {
            retained.addAndGet(-b.capacity());
            return b;
        }
        return new NativeBuffer(1 << (cls + MIN_SHIFT), cls);
    }

    /** Returns a buffer the native side is done with. */
    public void release(NativeBuffer b) {
        if (retained.addAndGet(b.capacity()) <= retainLimit) {
            free[b.sizeClass()].offer(b);
        } else {
            retained.addAndGet(-b.capacity());
            b.free();
        }
    }

    /** Bytes of idle buffers held for reuse. */
    public long retainedBytes() {
        return retained.get();
    }

    static int sizeClass(int length) {
        if (length < 0 || length > 1 << 30) {
            throw new IllegalArgumentException("buffer length out of range: " + length);
        }
        int shift = length <= 1 << MIN_SHIFT ? MIN_SHIFT : 32 - Integer.numberOfLeadingZeros(length - 1);
        return shift - MIN_SHIFT;
    }
}
