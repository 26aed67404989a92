package io.rbdnbd.engine.backend;

import io.rbdnbd.nativeio.Errno;
import io.rbdnbd.nativeio.NativeException;
import io.rbdnbd.nativeio.ceph.RbdImage;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.function.IntConsumer;

/**
 * The policy between librbd's quiesce watch and a {@link Listener}: librbd's callbacks only queue
 * the listener's calls, which run in order, one at a time, on an executor (librbd's work queue
 * must not wait for a hook or a flush). Only the answer to the request in progress reaches
 * librbd; once the session is closing, a request still waiting for its answer fails its snapshot
 * (the watch answers it -ESHUTDOWN), a listener that quiesces after all is unquiesced at once,
 * and one holding writes for a snapshot under way gets its unquiesce at the close.
 */
final class QuiesceSession implements RbdImage.QuiesceCallbacks, AutoCloseable {

    /** Hears of snapshots being taken of the image, for a consistent snapshot. */
    interface Listener {
        /**
         * A snapshot is about to be taken: stop writes and flush, then answer {@code done} with 0,
         * or with a negative errno to make the snapshot fail. Only the first answer counts.
         */
        void quiesce(IntConsumer done);

        /** The snapshot is taken (or failed): writes may go on. Follows exactly each quiesce answered 0. */
        void unquiesce();
    }

    private final Listener listener;
    private final Executor executor;
    /** The native watch, once {@link #start} has it (a request may arrive before). */
    private final CompletableFuture<RbdImage.QuiesceWatch> watch = new CompletableFuture<>();
    // all guarded by this
    private long requests;
    /** The request awaiting the listener's answer, 0 when none. */
    private long awaiting;
    /** Answered 0 and no unquiesce delivered yet: the listener still holds writes. */
    private boolean quiesced;
    /** The request closing refused for the listener, 0 when none. */
    private long refused;
    private boolean closing;
    /** The listener's calls, chained so that they run in order, one at a time. */
    private CompletableFuture<Void> events = CompletableFuture.completedFuture(null);

    private QuiesceSession(Listener listener, Executor executor) {
        this.listener = listener;
        this.executor = executor;
    }

    /** Watches {@code image} for snapshots, telling {@code listener} on {@code executor}. */
    static QuiesceSession start(RbdImage image, Listener listener, Executor executor) throws NativeException {
        QuiesceSession s = new QuiesceSession(listener, executor);
        s.watch.complete(image.watchQuiesce(s));
        return s;
    }

    /** On librbd's thread: hands the request to the listener, or refuses it while closing. */
    @Override
    public void quiesce() {
        long request;
        synchronized (this) {
            request = ++requests;
            if (!closing) {
                awaiting = request;
                deliver(() -> {
                    try {
                        listener.quiesce(r -> answer(request, r));
                    } catch (RuntimeException e) {
                        answer(request, -Errno.EIO);
                    }
                }, request);
                return;
            }
        }
        reply(-Errno.ESHUTDOWN);
    }

    /** On librbd's thread. */
    @Override
    public synchronized void unquiesce() {
        if (quiesced) { // else closing has delivered it already
            quiesced = false;
            deliver(this::unquiesceListener, 0);
        }
    }

    private void unquiesceListener() {
        try {
            listener.unquiesce();
        } catch (RuntimeException ignored) {
            // the listener logs its own failures; nothing to answer
        }
    }

    /** Queues a call of the listener behind the previous ones; under this. */
    private void deliver(Runnable call, long request) {
        events = events.handleAsync((v, t) -> {
            call.run();
            return null;
        }, executor);
        if (request != 0) { // fails only when the executor refused the call
            events.exceptionally(t -> {
                answer(request, -Errno.ESHUTDOWN);
                return null;
            });
        }
    }

    private void answer(long request, int r) {
        synchronized (this) {
            if (closing || awaiting != request) {
                if (request == refused && r >= 0) { // quiesced after closing refused it: undo
                    refused = 0;
                    deliver(this::unquiesceListener, 0);
                }
                return;
            }
            awaiting = 0;
            quiesced = r >= 0;
        }
        reply(r);
    }

    private void reply(int r) {
        watch.thenAccept(w -> w.complete(r));
    }

    /**
     * Ends the session and its watch (see {@link RbdImage.QuiesceWatch#close()}: blocks while
     * another watch of the image has a snapshot to answer). Idempotent.
     */
    @Override
    public void close() throws NativeException {
        synchronized (this) {
            if (!closing) {
                closing = true;
                refused = awaiting;
                awaiting = 0;
                if (quiesced) {
                    quiesced = false;
                    deliver(this::unquiesceListener, 0);
                }
            }
        }
        watch.join().close();
    }
}
