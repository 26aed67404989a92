package io.rbdnbd.engine.backend;

import io.rbdnbd.engine.Await;
import io.rbdnbd.nativeio.Errno;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ReopenableBackendTest {
    private static final long SIZE = 1 << 20;
    private static final Duration LONG_WAIT = Duration.ofSeconds(30);

    private final ConcurrentLinkedQueue<ReopenableBackend.Lost> losses = new ConcurrentLinkedQueue<>();

    private ReopenableBackend wrap(BlockBackend handle, Duration requestWait) {
        return new ReopenableBackend(handle, requestWait, losses::add);
    }

    private static BackendException fatal() {
        return BackendException.handleLost(Errno.ESHUTDOWN, "injected: client blocklisted");
    }

    /** The failure a stage completed with, unwrapped; fails the test if it does not fail within 10 s. */
    private static BackendException failure(CompletionStage<?> stage) throws Exception {
        try {
            stage.toCompletableFuture().get(10, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            return assertInstanceOf(BackendException.class, e.getCause());
        }
        throw new AssertionError("completed normally, expected a failure");
    }

    private static <T> T value(CompletionStage<T> stage) throws Exception {
        return stage.toCompletableFuture().get(10, TimeUnit.SECONDS);
    }

    /** Loses the handle of {@code r} by one call failing fatally on it; returns that call's error. */
    private static BackendException loseHandle(ReopenableBackend r, ScriptedBackend handle) throws Exception {
        handle.setFault(ScriptedBackend.fatalAfter(0, Errno.ESHUTDOWN));
        return failure(r.read(0, 1));
    }

    @Test
    void theLastLossAndTheReopenCountAreKeptForDisplay() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        ReopenableBackend r = wrap(first, LONG_WAIT);
        assertTrue(r.lastLoss().isEmpty());
        assertEquals(0, r.generation());
        Instant before = Instant.now();
        loseHandle(r, first);
        ReopenableBackend.LastLoss loss = r.lastLoss().orElseThrow();
        assertEquals(0, loss.generation());
        assertTrue(loss.cause().contains("handle lost") && loss.cause().contains("ESHUTDOWN"), loss.cause());
        assertFalse(loss.at().isBefore(before));
        ScriptedBackend second = new ScriptedBackend(new MemoryBackend(SIZE));
        assertTrue(r.replace(second));
        assertEquals(1, r.generation(), "reopened once");
        assertEquals(loss, r.lastLoss().orElseThrow(), "kept after the reopen");
        loseHandle(r, second);
        assertEquals(1, r.lastLoss().orElseThrow().generation());
    }

    @Test
    void callsInFlightOnALostHandleAllGetEioAtOnceThoughTheDeadHandleNeverAnswers() throws Exception {
        ScriptedBackend dead = new ScriptedBackend(new MemoryBackend(SIZE));
        dead.setFault(dead.holding());
        ReopenableBackend r = wrap(dead, LONG_WAIT);
        List<CompletionStage<?>> calls = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            calls.add(i % 2 == 0 ? r.read(i * 4096L, 4096) : r.write(i * 4096L, ByteString.fromArray(new byte[4096]), false));
        }
        Await.until(() -> dead.held.size() == 10);
        assertTrue(dead.failOldestHeld(fatal()));
        for (CompletionStage<?> c : calls) {
            BackendException e = failure(c);
            assertEquals(Errno.EIO, e.errno());
            assertTrue(e.getMessage().contains("was lost") && e.getMessage().contains("reopening"), e.getMessage());
            assertFalse(e.handleLost(), "the error given to clients does not itself claim a lost handle");
        }
        assertEquals(9, dead.held.size(), "the dead handle never answered the others");
        assertEquals(1, losses.size());
        ReopenableBackend.Lost lost = losses.peek();
        assertSame(dead, lost.handle());
        assertEquals(0, lost.generation());
        assertEquals(Errno.ESHUTDOWN, lost.cause().errno());
        assertFalse(r.isUp());
    }

    @Test
    void callsMadeWhileDownWaitAndProceedOnTheNewHandleInTheOrderTheyCame() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        ReopenableBackend r = wrap(first, LONG_WAIT);
        loseHandle(r, first);
        List<CompletionStage<Void>> writes = new ArrayList<>();
        for (int i = 1; i <= 20; i++) { // all to one block: the last one issued is what reads back
            writes.add(r.write(0, ByteString.fromArray(new byte[] {(byte) i}), false));
        }
        CompletionStage<ByteString> read = r.read(0, 1);
        Thread.sleep(100);
        writes.forEach(w -> assertFalse(w.toCompletableFuture().isDone(), "waits while down"));
        assertEquals(1, first.calls.get(), "nothing more reached the lost handle");

        ScriptedBackend second = new ScriptedBackend(new MemoryBackend(SIZE));
        assertTrue(r.replace(second));
        for (CompletionStage<Void> w : writes) {
            value(w);
        }
        assertArrayEquals(new byte[] {20}, value(read).toArray(), "issued in order of arrival");
        assertEquals(21, second.calls.get());
        assertTrue(r.isUp());
        assertEquals(1, r.generation());
        value(r.flush());
        assertEquals(1, losses.size());
    }

    @Test
    void callsWaitingTooLongFailWithEioAndAreNotIssuedLater() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        ReopenableBackend r = wrap(first, Duration.ofMillis(200));
        loseHandle(r, first);
        long start = System.nanoTime();
        BackendException e = failure(r.write(0, ByteString.fromArray(new byte[512]), false));
        long waitedMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().contains("unavailable: reopening since"), e.getMessage());
        assertTrue(waitedMs >= 150, "waited " + waitedMs + " ms");
        ScriptedBackend second = new ScriptedBackend(new MemoryBackend(SIZE));
        r.replace(second);
        value(r.flush());
        assertEquals(1, second.calls.get(), "the timed-out write was never issued");
    }

    @Test
    void withNoRequestWaitCallsWhileDownFailAtOnce() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        ReopenableBackend r = wrap(first, Duration.ZERO);
        loseHandle(r, first);
        CompletableFuture<Void> f = r.flush().toCompletableFuture();
        assertTrue(f.isCompletedExceptionally());
        assertEquals(Errno.EIO, failure(f).errno());
    }

    @Test
    void givingUpFailsWaitingAndLaterCallsAtOnceUntilReplaced() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        ReopenableBackend r = wrap(first, LONG_WAIT);
        loseHandle(r, first);
        List<CompletionStage<ByteString>> waiting = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            waiting.add(r.read(0, 512));
        }
        r.giveUp("opening failed 3 times: ENOENT");
        for (CompletionStage<ByteString> w : waiting) {
            BackendException e = failure(w);
            assertEquals(Errno.EIO, e.errno());
            assertTrue(e.getMessage().contains("gave up reopening: opening failed 3 times"), e.getMessage());
        }
        CompletableFuture<Void> later = r.flush().toCompletableFuture();
        assertTrue(later.isCompletedExceptionally(), "fails at once, without waiting");
        assertEquals(SIZE, r.size(), "still answers the size from the last handle");
        assertEquals(SIZE, value(r.refreshSize()));

        assertTrue(r.replace(new MemoryBackend(2 * SIZE)));
        value(r.flush());
        assertEquals(2 * SIZE, r.size());
    }

    @Test
    void aDownHandleStillAnswersSizeAndIdentity() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        ReopenableBackend r = wrap(first, LONG_WAIT);
        loseHandle(r, first);
        assertEquals(SIZE, r.size());
        assertEquals(SIZE, value(r.refreshSize()), "at once, from the last handle");
        assertFalse(r.readOnly());
        assertEquals(first.describe(), r.describe());
    }

    @Test
    void ordinaryFailuresPassThroughAndLoseNothing() throws Exception {
        ScriptedBackend b = new ScriptedBackend(new MemoryBackend(SIZE));
        b.setFault(ScriptedBackend.failing(ScriptedBackend.Op.WRITE, Errno.ENOSPC));
        ReopenableBackend r = wrap(b, LONG_WAIT);
        assertEquals(Errno.ENOSPC, failure(r.write(0, ByteString.fromArray(new byte[1]), false)).errno());
        b.setFault(op -> {
            throw new IllegalStateException("backend bug");
        });
        assertThrows(ExecutionException.class, () -> r.flush().toCompletableFuture().get(10, TimeUnit.SECONDS));
        b.setFault(op -> null);
        value(r.flush());
        assertTrue(r.isUp());
        assertTrue(losses.isEmpty());
    }

    @Test
    void theListenerIsToldExactlyOncePerHandleUnderConcurrentFailures() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        first.setFault(ScriptedBackend.fatalAfter(0, Errno.ESHUTDOWN));
        ReopenableBackend r = wrap(first, Duration.ZERO);
        int threads = 8;
        int perThread = 500;
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            for (int round = 0; round < 3; round++) {
                CountDownLatch go = new CountDownLatch(1);
                List<CompletableFuture<List<CompletionStage<Void>>>> issued = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    issued.add(CompletableFuture.supplyAsync(() -> {
                        await(go);
                        List<CompletionStage<Void>> mine = new ArrayList<>();
                        for (int i = 0; i < perThread; i++) {
                            mine.add(r.flush());
                        }
                        return mine;
                    }, pool));
                }
                go.countDown();
                for (CompletableFuture<List<CompletionStage<Void>>> f : issued) {
                    for (CompletionStage<Void> c : f.get(10, TimeUnit.SECONDS)) {
                        assertEquals(Errno.EIO, failure(c).errno());
                    }
                }
                assertEquals(round + 1, losses.size(), "one notification per lost handle");
                ScriptedBackend next = new ScriptedBackend(new MemoryBackend(SIZE));
                next.setFault(ScriptedBackend.fatalAfter(0, Errno.ESHUTDOWN));
                r.replace(next);
            }
            assertEquals(List.of(0L, 1L, 2L), losses.stream().map(ReopenableBackend.Lost::generation).toList());
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void noCallIsLeftHangingWhenTheHandleIsLostWhileCallsPourIn() throws Exception {
        ScriptedBackend dead = new ScriptedBackend(new MemoryBackend(SIZE));
        dead.setFault(dead.holding());
        ReopenableBackend r = wrap(dead, LONG_WAIT);
        int threads = 4;
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        AtomicBoolean stop = new AtomicBoolean();
        try {
            List<CompletableFuture<List<CompletionStage<Void>>>> issued = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                issued.add(CompletableFuture.supplyAsync(() -> {
                    List<CompletionStage<Void>> mine = new ArrayList<>();
                    while (!stop.get() || mine.size() < 200) {
                        mine.add(r.flush());
                    }
                    return mine;
                }, pool));
            }
            Await.until(() -> dead.held.size() >= 100);
            dead.failOldestHeld(fatal());
            Thread.sleep(20); // calls keep coming while the handle goes down: they queue up
            ScriptedBackend fresh = new ScriptedBackend(new MemoryBackend(SIZE));
            r.replace(fresh);
            stop.set(true);
            int failed = 0;
            int succeeded = 0;
            for (CompletableFuture<List<CompletionStage<Void>>> f : issued) {
                for (CompletionStage<Void> c : f.get(10, TimeUnit.SECONDS)) {
                    try {
                        c.toCompletableFuture().get(10, TimeUnit.SECONDS);
                        succeeded++;
                    } catch (ExecutionException e) {
                        assertEquals(Errno.EIO, assertInstanceOf(BackendException.class, e.getCause()).errno());
                        failed++;
                    } catch (TimeoutException e) {
                        throw new AssertionError("a call was left hanging", e);
                    }
                }
            }
            // every call that reached the dead handle failed; a call caught registering just as the
            // handle went down may fail without having reached it, but none is answered twice
            assertTrue(failed >= dead.calls.get(), failed + " failed, " + dead.calls.get() + " reached the dead handle");
            assertEquals(fresh.calls.get(), succeeded, "every other call went to the new handle");
            assertTrue(succeeded > 0);
            assertEquals(1, losses.size());
        } finally {
            stop.set(true);
            pool.shutdownNow();
        }
    }

    private static final QuiesceHandler NO_OP_QUIESCE = new QuiesceHandler() {
        @Override
        public CompletionStage<Void> quiesce() {
            return CompletableFuture.completedFuture(null);
        }

        @Override
        public CompletionStage<Void> unquiesce() {
            return CompletableFuture.completedFuture(null);
        }
    };

    @Test
    void aQuiesceWatchFollowsEveryReplacingHandleUntilClosed() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        first.snapshots = true;
        ReopenableBackend r = wrap(first, LONG_WAIT);
        AutoCloseable watch = r.watchQuiesce(NO_OP_QUIESCE).orElseThrow();
        assertEquals(List.of(NO_OP_QUIESCE), first.quiesceWatches);

        loseHandle(r, first);
        ScriptedBackend second = new ScriptedBackend(new MemoryBackend(SIZE));
        second.snapshots = true;
        assertTrue(r.replace(second));
        assertEquals(List.of(NO_OP_QUIESCE), second.quiesceWatches);

        watch.close();
        assertTrue(second.quiesceWatches.isEmpty());
        loseHandle(r, second);
        ScriptedBackend third = new ScriptedBackend(new MemoryBackend(SIZE));
        third.snapshots = true;
        assertTrue(r.replace(third));
        assertTrue(third.quiesceWatches.isEmpty(), "a closed watch came back");
    }

    @Test
    void aQuiesceWatchRegisteredWhileTheHandleIsLostStartsOnTheNextOne() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        first.snapshots = true;
        ReopenableBackend r = wrap(first, LONG_WAIT);
        loseHandle(r, first);
        assertTrue(r.watchQuiesce(NO_OP_QUIESCE).isPresent());
        assertTrue(first.quiesceWatches.isEmpty(), "the lost handle was watched");
        ScriptedBackend second = new ScriptedBackend(new MemoryBackend(SIZE));
        second.snapshots = true;
        r.replace(second);
        assertEquals(List.of(NO_OP_QUIESCE), second.quiesceWatches);
    }

    @Test
    void handlesWithoutSnapshotsHaveNoQuiesceWatch() throws Exception {
        ReopenableBackend r = wrap(new ScriptedBackend(new MemoryBackend(SIZE)), LONG_WAIT);
        assertTrue(r.watchQuiesce(NO_OP_QUIESCE).isEmpty());
        assertTrue(new MemoryBackend(SIZE).watchQuiesce(NO_OP_QUIESCE).isEmpty());
        value(r.close());
        assertThrows(IllegalStateException.class, () -> r.watchQuiesce(NO_OP_QUIESCE));
    }

    @Test
    void closeClosesTheCurrentHandleAndAHandleOpenedAfterwardsIsClosedToo() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        ReopenableBackend r = wrap(first, LONG_WAIT);
        value(r.close());
        assertEquals(1, first.closes.get());
        BackendException e = failure(r.read(0, 1));
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().contains("closed"), e.getMessage());
        ScriptedBackend late = new ScriptedBackend(new MemoryBackend(SIZE));
        assertFalse(r.replace(late));
        assertEquals(1, late.closes.get());
    }

    @Test
    void closingWhileDownFailsTheWaitingCallsAndSaysTheCloseWasNotClean() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        ReopenableBackend r = wrap(first, LONG_WAIT);
        loseHandle(r, first);
        CompletionStage<Void> waiting = r.flush();
        BackendException closeFailure = failure(r.close());
        assertEquals(Errno.EIO, closeFailure.errno());
        assertEquals(Errno.EIO, failure(waiting).errno());
        assertEquals(0, first.closes.get(), "the lost handle is the owner's to close");
    }

    @Test
    void theFirstFlushAfterUnflushedWritesWereLostFailsOnceEvenIfItWaitedForTheNewHandle() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        ReopenableBackend r = wrap(first, LONG_WAIT);
        value(r.write(0, ByteString.fromArray(new byte[] {1}), false));
        value(r.flush());
        value(r.write(512, ByteString.fromArray(new byte[] {2}), false)); // acknowledged, not flushed
        value(r.trim(4096, 4096, false));
        loseHandle(r, first);
        CompletionStage<Void> waiting = r.flush(); // called after the loss: it must not vouch for those writes
        r.replace(new MemoryBackend(SIZE));
        BackendException e = failure(waiting);
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().contains("2 write(s) acknowledged but not flushed"), e.getMessage());
        value(r.flush()); // reported once
        value(r.close());
    }

    @Test
    void aLossWithEverythingFlushedOrWrittenWithFuaCostsNoFlushError() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        ReopenableBackend r = wrap(first, LONG_WAIT);
        value(r.write(0, ByteString.fromArray(new byte[] {1}), false));
        value(r.flush());
        value(r.write(512, ByteString.fromArray(new byte[] {2}), true));
        value(r.writeZeroes(4096, 4096, false, true));
        loseHandle(r, first);
        r.replace(new MemoryBackend(SIZE));
        value(r.flush());
        value(r.close());
    }

    @Test
    void closingAfterALossOfUnflushedWritesNoFlushReportedIsNotClean() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(SIZE));
        ReopenableBackend r = wrap(first, LONG_WAIT);
        value(r.write(0, ByteString.fromArray(new byte[] {1}), false));
        loseHandle(r, first);
        ScriptedBackend second = new ScriptedBackend(new MemoryBackend(SIZE));
        r.replace(second);
        assertEquals(Errno.EIO, failure(r.close()).errno());
        assertEquals(1, second.closes.get(), "closed all the same");
    }

    @Test
    void replacingALiveHandleIsRefused() {
        ReopenableBackend r = wrap(new MemoryBackend(SIZE), LONG_WAIT);
        assertThrows(IllegalStateException.class, () -> r.replace(new MemoryBackend(SIZE)));
    }

    private static void await(CountDownLatch l) {
        try {
            l.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }
}
