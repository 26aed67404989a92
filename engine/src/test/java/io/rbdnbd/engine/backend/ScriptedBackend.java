package io.rbdnbd.engine.backend;

import org.apache.pekko.util.ByteString;

import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * A fault-injecting backend for tests: wraps another and, per call, may fail with an errno,
 * throw, delay, hang, hold the call until the test releases it, or lose its handle on the image
 * ({@link BackendException#handleLost()}) after a number of calls. Counts calls that reached it
 * and closes; what {@link #close()} does can be scripted too.
 */
public final class ScriptedBackend implements BlockBackend {
    public enum Op { READ, WRITE, FLUSH, TRIM, ZERO, STATUS, CACHE }

    /** What to do with a call: null to pass it to the wrapped backend. */
    public interface Fault extends Function<Op, CompletableFuture<Void>> {
    }

    private final BlockBackend inner;
    private volatile Fault fault = op -> null;
    private volatile Supplier<CompletionStage<Void>> closer;
    public final AtomicInteger calls = new AtomicInteger();
    public final AtomicInteger closes = new AtomicInteger();
    public final AtomicInteger inFlight = new AtomicInteger();
    public final AtomicInteger maxInFlight = new AtomicInteger();
    public final ConcurrentLinkedQueue<CompletableFuture<Void>> held = new ConcurrentLinkedQueue<>();
    /** With {@link #snapshots}, the handlers {@link #watchQuiesce} holds (a closed watch leaves). */
    public final List<QuiesceHandler> quiesceWatches = new CopyOnWriteArrayList<>();
    /** Whether {@link #watchQuiesce} keeps handlers here instead of passing them to the wrapped backend. */
    public volatile boolean snapshots;

    public ScriptedBackend(BlockBackend inner) {
        this.inner = inner;
        this.closer = inner::close;
    }

    public void setFault(Fault f) {
        this.fault = f;
    }

    /** Fails calls of {@code op} with {@code errno}. */
    public static Fault failing(Op op, int errno) {
        return o -> o == op ? CompletableFuture.failedFuture(new BackendException(errno, "injected " + op)) : null;
    }

    /** Delays every call by {@code d}. */
    public static Fault delaying(Duration d) {
        return o -> new CompletableFuture<Void>().completeOnTimeout(null, d.toNanos(), TimeUnit.NANOSECONDS);
    }

    /** Calls of {@code op} (every call when null) never complete: a dead handle that does not answer. */
    public static Fault hanging(Op op) {
        return o -> op == null || o == op ? new CompletableFuture<>() : null;
    }

    /**
     * The first {@code n} calls pass; every later one fails with a handle-lost error carrying
     * {@code errno}, as a blocklisted client's would.
     */
    public static Fault fatalAfter(int n, int errno) {
        AtomicInteger seen = new AtomicInteger();
        return o -> seen.incrementAndGet() > n
                ? CompletableFuture.failedFuture(BackendException.handleLost(errno, "injected: handle lost at " + o))
                : null;
    }

    /** The first {@code n} calls pass; every later one is held like {@link #holding()}'s. */
    public Fault holdingAfter(int n) {
        AtomicInteger seen = new AtomicInteger();
        Fault hold = holding();
        return o -> seen.incrementAndGet() > n ? hold.apply(o) : null;
    }

    /** Fails the oldest held call with {@code failure}; the others stay held. False if none is held. */
    public boolean failOldestHeld(Throwable failure) {
        CompletableFuture<Void> g = held.poll();
        return g != null && g.completeExceptionally(failure);
    }

    /** What {@link #close()} does instead of closing the wrapped backend (e.g. hang, or fail). */
    public void closeWith(Supplier<CompletionStage<Void>> close) {
        this.closer = close;
    }

    /** Holds every call until the test completes the gates in {@link #held}. */
    public Fault holding() {
        return o -> {
            CompletableFuture<Void> gate = new CompletableFuture<>();
            held.add(gate);
            return gate;
        };
    }

    public void releaseAll() {
        CompletableFuture<Void> g;
        while ((g = held.poll()) != null) {
            g.complete(null);
        }
    }

    private <T> CompletionStage<T> around(Op op, java.util.function.Supplier<CompletionStage<T>> call) {
        calls.incrementAndGet();
        int now = inFlight.incrementAndGet();
        maxInFlight.accumulateAndGet(now, Math::max);
        CompletableFuture<Void> f = fault.apply(op);
        CompletionStage<T> result = f == null ? call.get() : f.thenCompose(v -> call.get());
        return result.whenComplete((v, t) -> inFlight.decrementAndGet());
    }

    @Override
    public long size() {
        return inner.size();
    }

    @Override
    public CompletionStage<Long> refreshSize() {
        return inner.refreshSize();
    }

    @Override
    public boolean readOnly() {
        return inner.readOnly();
    }

    @Override
    public CompletionStage<ByteString> read(long offset, int length) {
        return around(Op.READ, () -> inner.read(offset, length));
    }

    @Override
    public CompletionStage<Void> write(long offset, ByteString data, boolean fua) {
        return around(Op.WRITE, () -> inner.write(offset, data, fua));
    }

    @Override
    public CompletionStage<Void> flush() {
        return around(Op.FLUSH, inner::flush);
    }

    @Override
    public CompletionStage<Void> trim(long offset, long length, boolean fua) {
        return around(Op.TRIM, () -> inner.trim(offset, length, fua));
    }

    @Override
    public CompletionStage<Void> writeZeroes(long offset, long length, boolean noHole, boolean fua) {
        return around(Op.ZERO, () -> inner.writeZeroes(offset, length, noHole, fua));
    }

    @Override
    public CompletionStage<List<Extent>> blockStatus(long offset, long length) {
        return around(Op.STATUS, () -> inner.blockStatus(offset, length));
    }

    @Override
    public CompletionStage<Void> cache(long offset, long length) {
        return around(Op.CACHE, () -> inner.cache(offset, length));
    }

    @Override
    public Optional<AutoCloseable> watchQuiesce(QuiesceHandler handler) {
        if (!snapshots) {
            return inner.watchQuiesce(handler);
        }
        quiesceWatches.add(handler);
        return Optional.of(() -> quiesceWatches.remove(handler));
    }

    @Override
    public CompletionStage<Void> close() {
        closes.incrementAndGet();
        return closer.get();
    }

    @Override
    public String describe() {
        return "scripted(" + inner.describe() + ")";
    }
}
