package io.rbdnbd.engine.backend;

import io.rbdnbd.nativeio.Errno;
import org.apache.pekko.util.ByteString;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * A backend whose handle on the image can be lost and opened again, seen by the engine as one
 * {@link BlockBackend} that never goes away.
 *
 * <p>Every call goes to the current handle. When a call fails with
 * {@link BackendException#handleLost()} the handle is <em>down</em>: the owner is told once per
 * handle (the {@link Lost} listener; it closes the dead handle and opens a new one), and every
 * call still in flight on the dead handle is answered EIO at once, whether or not the dead handle
 * ever answers it. Calls made while down wait for the next handle ({@link #replace}) for at most
 * {@code requestWait}, then fail EIO; {@link #giveUp} fails them, and every later call, at once.
 * Waiting calls are the engine's requests in flight, already bounded by its iodepth and byte
 * budget: nothing else is buffered.
 *
 * <p>Writes acknowledged but not yet flushed when a handle is lost may never reach the image: the
 * next {@link #flush()} (or {@link #close()}) after such a loss fails EIO once, so that the client
 * does not take a later flush as covering them.
 *
 * <p>A {@link #watchQuiesce quiesce watch} is registered on every handle in turn, so snapshots of a
 * reopened image still reach its handler.
 *
 * <p>{@link #size()}, {@link #readOnly()} and {@link #describe()} answer from the last handle,
 * as does {@link #refreshSize()} while down. No lock is held while calling a handle: the state
 * is one atomic reference, replaced whole on each transition.
 */
public final class ReopenableBackend implements BlockBackend {
    private static final Logger log = LoggerFactory.getLogger(ReopenableBackend.class);

    /**
     * A handle was lost. {@code generation} counts handles from 0 (the one given at construction);
     * {@code handle} is the dead one, for the owner to close.
     */
    public record Lost(long generation, BlockBackend handle, BackendException cause, Instant at) {
    }

    /**
     * What is shown of the last lost handle (JMX, {@code rbd-nbd stats}): which one, why and when;
     * unlike {@link Lost}, it does not hold on to the dead handle.
     */
    public record LastLoss(long generation, String cause, Instant at) {
    }

    /** What a call does to durability: a write the next flush must cover, a flush, or neither. */
    private enum Kind { OTHER, WRITE, FLUSH }

    /**
     * One opened handle, the calls in flight on it (so that losing it can answer them), and how
     * many writes completed on it before and since the last completed flush.
     */
    private static final class Handle {
        final long generation;
        final BlockBackend backend;
        final Set<CompletableFuture<?>> inFlight = ConcurrentHashMap.newKeySet();
        final AtomicLong writesDone = new AtomicLong();
        final AtomicLong writesFlushed = new AtomicLong();

        Handle(long generation, BlockBackend backend) {
            this.generation = generation;
            this.backend = backend;
        }
    }

    private sealed interface State permits Up, Down, GaveUp, Closed {
        /** The current handle, or the last one there was. */
        Handle last();
    }

    private record Up(Handle last) implements State {
    }

    /** Waiting calls by order of arrival. */
    private record Down(Handle last, BackendException cause, Instant since,
                        ConcurrentSkipListMap<Long, Waiter<?>> waiters) implements State {
    }

    private record GaveUp(Handle last, String reason) implements State {
    }

    private record Closed(Handle last) implements State {
    }

    private record Waiter<T>(Kind kind, Function<BlockBackend, CompletionStage<T>> op, CompletableFuture<T> result) {
    }

    /** One {@link #watchQuiesce} registration, watching the newest handle it has seen. */
    private final class QuiesceRegistration implements AutoCloseable {
        private final QuiesceHandler handler;
        // guarded by this
        private long generation = -1;
        private AutoCloseable watch;
        private boolean closed;

        QuiesceRegistration(QuiesceHandler handler) {
            this.handler = handler;
        }

        /**
         * Watches {@code h} unless a newer handle is watched already; false when {@code h} has no
         * snapshots. The older handle's watch is left to its close, which the owner of a lost
         * handle does (and which may block, while this runs on whichever thread replaces).
         */
        synchronized boolean attach(Handle h) {
            if (closed || h.generation <= generation) {
                return true;
            }
            Optional<AutoCloseable> w = h.backend.watchQuiesce(handler);
            if (w.isEmpty()) {
                return false;
            }
            generation = h.generation;
            watch = w.get();
            return true;
        }

        @Override
        public void close() throws Exception {
            AutoCloseable w;
            synchronized (this) {
                if (closed) {
                    return;
                }
                closed = true;
                w = watch;
                watch = null;
            }
            quiesceWatches.remove(this);
            if (w != null) {
                w.close();
            }
        }
    }

    private final AtomicReference<State> state;
    private final Set<QuiesceRegistration> quiesceWatches = ConcurrentHashMap.newKeySet();
    private final long requestWaitNanos;
    private final Consumer<Lost> onLost;
    private final AtomicLong arrivals = new AtomicLong();
    private final AtomicReference<LastLoss> lastLoss = new AtomicReference<>();
    /** Unflushed writes were lost with a handle: what the next flush says, once. */
    private final AtomicReference<BackendException> unflushedLoss = new AtomicReference<>();

    /**
     * @param handle      the image, already open
     * @param requestWait how long a call made while the handle is down waits for the next one
     * @param onLost      told once per lost handle, on whichever thread completed the failing call;
     *                    must return at once (an actor's {@code tell})
     */
    public ReopenableBackend(BlockBackend handle, Duration requestWait, Consumer<Lost> onLost) {
        if (requestWait.isNegative()) {
            throw new IllegalArgumentException("request wait must not be negative: " + requestWait);
        }
        this.state = new AtomicReference<>(new Up(new Handle(0, handle)));
        this.requestWaitNanos = requestWait.toNanos();
        this.onLost = onLost;
    }

    /** Told of every handle's new size, the reopened ones' too. */
    private volatile SizeListener sizeListener;

    @Override
    public void onResized(SizeListener listener) {
        this.sizeListener = listener;
        state.get().last().backend.onResized(listener);
    }

    // ---- for the owner ----

    /**
     * Puts a freshly opened handle in place of a lost one (or after {@link #giveUp}): calls waiting
     * for it are issued on it in the order they arrived. Returns false, having closed
     * {@code fresh}, when this backend was closed in the meantime.
     *
     * @throws IllegalStateException when the current handle is not lost
     */
    public boolean replace(BlockBackend fresh) {
        while (true) {
            State s = state.get();
            if (s instanceof Closed) {
                fresh.close();
                return false;
            }
            if (s instanceof Up) {
                throw new IllegalStateException("the handle on " + describe() + " is not lost; nothing to replace");
            }
            Up up = new Up(new Handle(s.last().generation + 1, fresh));
            if (!state.compareAndSet(s, up)) {
                continue;
            }
            SizeListener sizes = sizeListener;
            if (sizes != null) {
                fresh.onResized(sizes);
            }
            if (s instanceof Down d) {
                Map.Entry<Long, Waiter<?>> e;
                while ((e = d.waiters().pollFirstEntry()) != null) {
                    resume(e.getValue());
                }
            }
            for (QuiesceRegistration r : quiesceWatches) {
                try {
                    r.attach(up.last());
                } catch (RuntimeException e) {
                    log.error("{}: snapshots of the reopened image will not be quiesced: {}", fresh.describe(),
                            e.getMessage());
                }
            }
            return true;
        }
    }

    /**
     * No new handle is coming: calls waiting for one, and every call from now on until a
     * {@link #replace}, fail EIO at once with {@code reason}.
     */
    public void giveUp(String reason) {
        while (true) {
            State s = state.get();
            if (s instanceof Closed || s instanceof GaveUp) {
                return;
            }
            GaveUp g = new GaveUp(s.last(), reason);
            if (!state.compareAndSet(s, g)) {
                continue;
            }
            BackendException error = unavailable(g);
            if (s instanceof Down d) {
                failAll(d.waiters(), error);
            } else if (s instanceof Up u) {
                answerInFlight(u.last(), error);
            }
            return;
        }
    }

    /** True while calls go straight to a handle (not lost, not given up, not closed). */
    public boolean isUp() {
        return state.get() instanceof Up;
    }

    /**
     * Which handle is (or was last) in use: 0 for the first, one more per {@link #replace}; so
     * also how many times the image was reopened.
     */
    public long generation() {
        return state.get().last().generation;
    }

    /** The last handle lost, or empty while none ever was. Stays after a successful reopen. */
    public Optional<LastLoss> lastLoss() {
        return Optional.ofNullable(lastLoss.get());
    }

    // ---- BlockBackend ----

    /**
     * Registers {@code handler} on the current handle and again on every handle that
     * {@link #replace replaces} it; while the handle is lost, on the next one. Empty when the
     * handle has no snapshots. Closing the result ends the watch on the handle in use.
     *
     * @throws IllegalStateException when this backend is closed
     */
    @Override
    public Optional<AutoCloseable> watchQuiesce(QuiesceHandler handler) {
        QuiesceRegistration r = new QuiesceRegistration(handler);
        quiesceWatches.add(r); // before reading the state: a replace from now on attaches it
        State s = state.get();
        try {
            if (s instanceof Closed) {
                throw new IllegalStateException(describe() + " is closed");
            }
            if (s instanceof Up u && !r.attach(u.last())) {
                quiesceWatches.remove(r);
                return Optional.empty();
            }
        } catch (RuntimeException e) {
            quiesceWatches.remove(r);
            throw e;
        }
        return Optional.of(r);
    }

    @Override
    public long size() {
        return state.get().last().backend.size();
    }

    @Override
    public boolean readOnly() {
        return state.get().last().backend.readOnly();
    }

    @Override
    public String describe() {
        return state.get().last().backend.describe();
    }

    /** While the handle is down, completes at once with the last known size. */
    @Override
    public CompletionStage<Long> refreshSize() {
        State s = state.get();
        if (s instanceof Up u) {
            CompletableFuture<Long> result = new CompletableFuture<>();
            onHandle(u, Kind.OTHER, BlockBackend::refreshSize, result);
            return result;
        }
        return CompletableFuture.completedFuture(s.last().backend.size());
    }

    @Override
    public CompletionStage<ByteString> read(long offset, int length) {
        return call(Kind.OTHER, b -> b.read(offset, length));
    }

    @Override
    public CompletionStage<Void> write(long offset, ByteString data, boolean fua) {
        return call(fua ? Kind.OTHER : Kind.WRITE, b -> b.write(offset, data, fua));
    }

    /** Fails EIO, once, when unflushed writes were lost with a handle since the last flush. */
    @Override
    public CompletionStage<Void> flush() {
        return call(Kind.FLUSH, BlockBackend::flush);
    }

    @Override
    public CompletionStage<Void> trim(long offset, long length, boolean fua) {
        return call(fua ? Kind.OTHER : Kind.WRITE, b -> b.trim(offset, length, fua));
    }

    @Override
    public CompletionStage<Void> writeZeroes(long offset, long length, boolean noHole, boolean fua) {
        return call(fua ? Kind.OTHER : Kind.WRITE, b -> b.writeZeroes(offset, length, noHole, fua));
    }

    @Override
    public CompletionStage<List<Extent>> blockStatus(long offset, long length) {
        return call(Kind.OTHER, b -> b.blockStatus(offset, length));
    }

    @Override
    public CompletionStage<Void> cache(long offset, long length) {
        return call(Kind.OTHER, b -> b.cache(offset, length));
    }

    /**
     * Closes (flushes) the current handle. When the handle is lost or given up there is nothing to
     * flush: completes with an EIO failure, since writes acknowledged before the loss may not have
     * reached the image; likewise when such a loss was not yet reported by a flush. Waiting calls
     * fail; a handle opened later is closed at once.
     */
    @Override
    public CompletionStage<Void> close() {
        while (true) {
            State s = state.get();
            if (s instanceof Closed) {
                return CompletableFuture.completedFuture(null);
            }
            Closed c = new Closed(s.last());
            if (!state.compareAndSet(s, c)) {
                continue;
            }
            quiesceWatches.clear(); // closing the handle ends its watches
            if (s instanceof Up u) {
                return u.last().backend.close().thenCompose(v -> {
                    BackendException lost = unflushedLoss.getAndSet(null);
                    return lost == null ? CompletableFuture.<Void>completedFuture(null) : CompletableFuture.<Void>failedFuture(lost);
                });
            }
            if (s instanceof Down d) {
                failAll(d.waiters(), unavailable(c));
            }
            return CompletableFuture.failedFuture(new BackendException(Errno.EIO, "the handle on " + describe()
                    + " was lost before closing; writes not yet flushed then may not have reached the image"));
        }
    }

    // ---- the call path ----

    private <T> CompletionStage<T> call(Kind kind, Function<BlockBackend, CompletionStage<T>> op) {
        CompletableFuture<T> result = new CompletableFuture<>();
        dispatch(kind, op, result);
        return result;
    }

    /** Sends the call where the current state says: the handle, the waiting line, or an error. */
    private <T> void dispatch(Kind kind, Function<BlockBackend, CompletionStage<T>> op, CompletableFuture<T> result) {
        State s = state.get();
        if (s instanceof Up u) {
            onHandle(u, kind, op, result);
        } else if (s instanceof Down d) {
            await(d, kind, op, result);
        } else {
            result.completeExceptionally(unavailable(s));
        }
    }

    private <T> void onHandle(Up up, Kind kind, Function<BlockBackend, CompletionStage<T>> op,
                              CompletableFuture<T> result) {
        Handle h = up.last();
        if (kind == Kind.FLUSH) { // checked on reaching a handle: a flush waiting through a loss sees it too
            BackendException lost = unflushedLoss.getAndSet(null);
            if (lost != null) {
                result.completeExceptionally(lost);
                return;
            }
        }
        h.inFlight.add(result);
        if (state.get() != up) { // lost (or given up, closed) before the call was registered
            if (h.inFlight.remove(result)) {
                dispatch(kind, op, result); // it never reached the handle: go by the new state
            } // else whoever changed the state has answered it
            return;
        }
        long covers = kind == Kind.FLUSH ? h.writesDone.get() : 0; // a flush covers writes completed before it
        CompletionStage<T> stage;
        try {
            stage = op.apply(h.backend);
        } catch (RuntimeException e) { // a handle that throws instead of failing the stage
            stage = CompletableFuture.failedFuture(e);
        }
        stage.whenComplete((value, failure) -> {
            h.inFlight.remove(result);
            if (failure == null) {
                if (kind == Kind.WRITE) {
                    h.writesDone.incrementAndGet(); // before the check: a loss either counts it or fails it
                    State now = state.get();
                    if (now != up && !(now instanceof Closed)) { // the handle went while the write was on it
                        result.completeExceptionally(now instanceof Down d ? lostError(h, d.cause()) : unavailable(now));
                        return;
                    }
                } else if (kind == Kind.FLUSH) {
                    h.writesFlushed.accumulateAndGet(covers, Math::max);
                }
                result.complete(value);
                return;
            }
            Throwable cause = BackendException.unwrap(failure);
            if (cause instanceof BackendException be && be.handleLost()) {
                lose(up, be);
                result.completeExceptionally(lostError(h, be));
            } else {
                result.completeExceptionally(cause);
            }
        });
    }

    private <T> void await(Down d, Kind kind, Function<BlockBackend, CompletionStage<T>> op,
                           CompletableFuture<T> result) {
        if (requestWaitNanos == 0) {
            result.completeExceptionally(unavailable(d));
            return;
        }
        long seq = arrivals.incrementAndGet();
        d.waiters().put(seq, new Waiter<>(kind, op, result));
        if (state.get() != d) { // replaced, given up or closed before the call was queued
            if (d.waiters().remove(seq) != null) {
                dispatch(kind, op, result);
            } // else the transition took it from the queue and dealt with it
            return;
        }
        CompletableFuture<Void> deadline = new CompletableFuture<Void>().orTimeout(requestWaitNanos, TimeUnit.NANOSECONDS);
        deadline.whenComplete((v, timedOut) -> {
            if (timedOut != null && d.waiters().remove(seq) != null) {
                result.completeExceptionally(unavailable(d));
            }
        });
        result.whenComplete((v, t) -> deadline.complete(null)); // answered in time: cancels the timer
    }

    private <T> void resume(Waiter<T> w) {
        dispatch(w.kind(), w.op(), w.result());
    }

    /** The first failure that says {@code up}'s handle is lost turns it down; later ones do nothing. */
    private void lose(Up up, BackendException cause) {
        Instant at = Instant.now();
        Down down = new Down(up.last(), cause, at, new ConcurrentSkipListMap<>());
        if (!state.compareAndSet(up, down)) {
            return; // already lost, given up or closed
        }
        Handle h = up.last();
        lastLoss.set(new LastLoss(h.generation, cause.getMessage(), at));
        long unflushed = h.writesDone.get() - h.writesFlushed.get();
        if (unflushed > 0) {
            unflushedLoss.compareAndSet(null, new BackendException(Errno.EIO, unflushed + " write(s) acknowledged"
                    + " but not flushed when the handle on " + h.backend.describe() + " was lost at " + at
                    + " may not have reached the image", cause));
        }
        answerInFlight(h, lostError(h, cause));
        try {
            onLost.accept(new Lost(h.generation, h.backend, cause, at));
        } catch (RuntimeException e) {
            log.error("the handle-lost listener of {} failed", h.backend.describe(), e);
        }
    }

    /** Answers every call still in flight on {@code h}; whatever {@code h} answers later is dropped. */
    private static void answerInFlight(Handle h, BackendException error) {
        for (CompletableFuture<?> f : h.inFlight) {
            if (h.inFlight.remove(f)) {
                f.completeExceptionally(error);
            }
        }
    }

    private static void failAll(ConcurrentSkipListMap<Long, Waiter<?>> waiters, BackendException error) {
        Map.Entry<Long, Waiter<?>> e;
        while ((e = waiters.pollFirstEntry()) != null) {
            e.getValue().result().completeExceptionally(error);
        }
    }

    private static BackendException lostError(Handle h, BackendException cause) {
        return new BackendException(Errno.EIO, "the handle on " + h.backend.describe() + " was lost ("
                + cause.getMessage() + "); reopening the image", cause);
    }

    private BackendException unavailable(State s) {
        String image = s.last().backend.describe();
        if (s instanceof Down d) {
            return new BackendException(Errno.EIO, "image " + image + " unavailable: reopening since " + d.since()
                    + " (" + d.cause().getMessage() + ")", d.cause());
        }
        if (s instanceof GaveUp g) {
            return new BackendException(Errno.EIO, "image " + image + " unavailable: gave up reopening: " + g.reason());
        }
        return new BackendException(Errno.EIO, "image " + image + " is closed");
    }
}
