package io.rbdnbd.engine.backend;

import org.apache.pekko.util.ByteString;

import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletionStage;

/**
 * What the engine needs of a block image. Every call returns at once; the work completes the
 * stage, never the caller's thread waiting on it. A failure completes the stage exceptionally
 * with a {@link BackendException} carrying the errno the client should see.
 *
 * <p>Callers (the engine's {@code RequestDispatcher}) have already checked ranges against
 * {@link #size()} and writes against {@link #readOnly()}: a backend may assume
 * {@code 0 <= offset} and {@code offset + length <= size()} for every call.
 *
 * <p>Durability: a completed {@link #flush()} covers every write completed before it was
 * called; a write with {@code fua} is durable once it completes. Several connections may share one
 * backend, so every method is safe to call concurrently.
 */
public interface BlockBackend {

    /** Current size in bytes, as last learnt (see {@link #refreshSize()}). */
    long size();

    /**
     * Asks the image for its size again (someone may have resized it) and completes with it;
     * {@link #size()} returns the new value from then on. The owner of the device decides what
     * to tell the kernel.
     */
    CompletionStage<Long> refreshSize();

    /**
     * Whom to tell of a new size while the image's own change notification is still being
     * handled: {@code rbd resize} returns once the image's watchers have acknowledged it, so a
     * device that has its new size by then is resized "synchronously", as Ceph's rbd-nbd does.
     * Backends without such notifications (file, memory) never call it; the owner's size poll
     * covers them. Replaces any earlier listener.
     */
    default void onResized(SizeListener listener) {
    }

    /** Told of a new size on the backend's notification thread, which waits (bounded) for the stage. */
    @FunctionalInterface
    interface SizeListener {
        /** Applies {@code size} to whatever shows the image; completes once it is applied. */
        CompletionStage<?> resized(long size);
    }

    /** True when the image itself cannot be written (a snapshot, a file opened read-only). */
    boolean readOnly();

    /** Reads {@code length} bytes; ranges never written read as zeroes. */
    CompletionStage<ByteString> read(long offset, int length);

    CompletionStage<Void> write(long offset, ByteString data, boolean fua);

    CompletionStage<Void> flush();

    /** Discards the range; it may then read as anything (our backends read zeroes). */
    CompletionStage<Void> trim(long offset, long length, boolean fua);

    /**
     * Makes the range read as zeroes; with {@code noHole} the range stays allocated, otherwise
     * the backend is encouraged to deallocate it.
     */
    CompletionStage<Void> writeZeroes(long offset, long length, boolean noHole, boolean fua);

    /**
     * Allocation state from {@code offset}: at least one extent, lengths adding up to at most
     * {@code length}, the first starting at {@code offset}.
     */
    CompletionStage<List<Extent>> blockStatus(long offset, long length);

    /** Advises that the range will be read soon. Completing without doing anything is correct. */
    CompletionStage<Void> cache(long offset, long length);

    /**
     * Has {@code handler} called around every snapshot taken of the image, by anyone (see
     * {@link QuiesceHandler}), until the result is closed or the backend is. Empty when the
     * image has no snapshots (files, memory): there is nothing to watch. Closing the result may
     * block while a snapshot is being taken; run it off latency-sensitive threads.
     *
     * @throws BackendException when the image refuses the watch
     */
    default Optional<AutoCloseable> watchQuiesce(QuiesceHandler handler) {
        return Optional.empty();
    }

    /** Flushes and releases the image. The backend is unusable afterwards. */
    CompletionStage<Void> close();

    /** Human-readable identity for logs and listings, e.g. {@code file:/var/tmp/disk.img}. */
    String describe();
}
