package io.rbdnbd.actors;

import com.typesafe.config.ConfigFactory;
import io.rbdnbd.engine.backend.BackendException;
import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.backend.MemoryBackend;
import io.rbdnbd.engine.backend.ReopenableBackend;
import io.rbdnbd.engine.backend.ScriptedBackend;
import io.rbdnbd.nativeio.Errno;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.IntFunction;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ImageSupervisorTest {
    private static final long SIZE = 1 << 20;
    /** A thread-pool dispatcher names its threads after itself: shows where the opener ran. */
    private static final ActorTestKit testKit = ActorTestKit.create(ConfigFactory.parseString(
            "reopen-test-dispatcher { type = Dispatcher, executor = thread-pool-executor, throughput = 1 }")
            .withFallback(ConfigFactory.load()));

    @AfterAll
    static void shutdown() {
        testKit.shutdownTestKit();
    }

    static ReopenSettings settings(Duration min, Duration max, double randomFactor, int maxAttempts,
                                   Duration requestWait, Duration closeTimeout) {
        return new ReopenSettings(min, max, randomFactor, maxAttempts, requestWait, closeTimeout,
                "rbdnbd.reopen.dispatcher-config");
    }

    private static ReopenSettings quick(int maxAttempts) {
        return new ReopenSettings(Duration.ofMillis(20), Duration.ofMillis(100), 0, maxAttempts, Duration.ofSeconds(10),
                Duration.ofSeconds(5), "reopen-test-dispatcher");
    }

    /** Opens what {@code script} says for attempt n (1 for the first); remembers when and on which thread. */
    static final class ScriptedOpener implements ImageSupervisor.Opener {
        final IntFunction<BlockBackend> script;
        final List<Long> at = new CopyOnWriteArrayList<>();
        final List<String> threads = new CopyOnWriteArrayList<>();

        ScriptedOpener(IntFunction<BlockBackend> script) {
            this.script = script;
        }

        @Override
        public BlockBackend open() {
            at.add(System.nanoTime());
            threads.add(Thread.currentThread().getName());
            return script.apply(at.size());
        }

        int calls() {
            return at.size();
        }
    }

    /** A handle on a shared image: closing it leaves the image (as closing one RBD handle would). */
    static ScriptedBackend handleOn(BlockBackend image) {
        ScriptedBackend h = new ScriptedBackend(image);
        h.closeWith(() -> CompletableFuture.completedFuture(null));
        return h;
    }

    /** Wires a wrapper and its supervisor as {@link ImageSupervisor#supervise} does, under the test kit. */
    static ReopenableBackend supervised(ActorTestKit kit, BlockBackend first, ImageSupervisor.Opener opener,
                                        ReopenSettings s, ActorRef<ImageSupervisor.Report> reports) {
        AtomicReference<ActorRef<ImageSupervisor.Command>> ref = new AtomicReference<>();
        ReopenableBackend image = new ReopenableBackend(first, s.requestWait(),
                lost -> ref.get().tell(new ImageSupervisor.HandleLost(lost)));
        ref.set(kit.spawn(ImageSupervisor.create(image, opener, s, reports)));
        return image;
    }

    static BackendException failure(CompletionStage<?> stage) throws Exception {
        try {
            stage.toCompletableFuture().get(10, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            return assertInstanceOf(BackendException.class, e.getCause());
        }
        throw new AssertionError("completed normally, expected a failure");
    }

    /** Makes the next call on {@code h} lose it, through {@code image}. */
    private static void loseHandle(ReopenableBackend image, ScriptedBackend h) throws Exception {
        h.setFault(ScriptedBackend.fatalAfter(0, Errno.ESHUTDOWN));
        assertEquals(Errno.EIO, failure(image.read(0, 1)).errno());
    }

    @Test
    void aLostHandleIsClosedAndTheImageReopenedOnTheBlockingDispatcher() throws Exception {
        MemoryBackend disk = new MemoryBackend(SIZE);
        ScriptedBackend first = handleOn(disk);
        List<ScriptedBackend> opened = new CopyOnWriteArrayList<>();
        ScriptedOpener opener = new ScriptedOpener(n -> {
            ScriptedBackend h = handleOn(disk);
            opened.add(h);
            return h;
        });
        TestProbe<ImageSupervisor.Report> reports = testKit.createTestProbe();
        ReopenableBackend image = supervised(testKit, first, opener, quick(0), reports.getRef());
        image.write(0, ByteString.fromArray(new byte[] {42}), false).toCompletableFuture().get(10, TimeUnit.SECONDS);

        loseHandle(image, first);
        ImageSupervisor.ImageLost lost = reports.expectMessageClass(ImageSupervisor.ImageLost.class);
        assertTrue(lost.cause().contains("ESHUTDOWN"), lost.cause());
        ImageSupervisor.Reopened reopened = reports.expectMessageClass(ImageSupervisor.Reopened.class);
        assertEquals(1, reopened.attempts());
        assertEquals(1, first.closes.get(), "the lost handle was closed");
        assertEquals(1, opener.calls());
        assertTrue(opener.threads.get(0).contains("reopen-test-dispatcher"), opener.threads.get(0));
        assertTrue(image.isUp());
        assertEquals(1, image.generation());
        assertEquals(42, image.read(0, 1).toCompletableFuture().get(10, TimeUnit.SECONDS).apply(0));
        assertEquals(1, opened.get(0).calls.get(), "served by the new handle");

        loseHandle(image, opened.get(0)); // and again: every loss of the new handle is handled alike
        reports.expectMessageClass(ImageSupervisor.ImageLost.class);
        reports.expectMessageClass(ImageSupervisor.Reopened.class);
        assertEquals(2, image.generation());
        assertEquals(1, opened.get(0).closes.get());
    }

    @Test
    void theBackoffGrowsBetweenFailedAttemptsUpToTheMaximum() throws Exception {
        ScriptedBackend first = handleOn(new MemoryBackend(SIZE));
        ScriptedOpener opener = new ScriptedOpener(n -> {
            if (n <= 4) {
                throw new BackendException(Errno.ETIMEDOUT, "cannot open image: cluster unreachable");
            }
            return handleOn(new MemoryBackend(SIZE));
        });
        TestProbe<ImageSupervisor.Report> reports = testKit.createTestProbe();
        ReopenSettings s = settings(Duration.ofMillis(50), Duration.ofMillis(200), 0, 0, Duration.ofSeconds(10),
                Duration.ofSeconds(5));
        ReopenableBackend image = supervised(testKit, first, opener, s, reports.getRef());
        loseHandle(image, first);
        reports.expectMessageClass(ImageSupervisor.ImageLost.class);
        long[] expectedMs = {100, 200, 200, 200};
        for (int i = 0; i < 4; i++) {
            ImageSupervisor.ReopenFailed f = reports.expectMessageClass(ImageSupervisor.ReopenFailed.class);
            assertEquals(i + 1, f.attempt());
            assertEquals(expectedMs[i], f.retryIn().toMillis(), "wait after attempt " + (i + 1));
            assertTrue(f.reason().contains("cluster unreachable") && f.reason().contains("ETIMEDOUT"), f.reason());
        }
        ImageSupervisor.Reopened r = reports.expectMessageClass(ImageSupervisor.Reopened.class);
        assertEquals(5, r.attempts());
        for (int i = 0; i < 4; i++) {
            long gapMs = TimeUnit.NANOSECONDS.toMillis(opener.at.get(i + 1) - opener.at.get(i));
            assertTrue(gapMs >= expectedMs[i] * 8 / 10, "attempt " + (i + 2) + " came " + gapMs + " ms after the previous");
        }
        assertTrue(image.isUp());
    }

    @Test
    void givesUpAfterMaxAttemptsAndThenEveryRequestFailsAtOnce() throws Exception {
        ScriptedBackend first = handleOn(new MemoryBackend(SIZE));
        ScriptedOpener opener = new ScriptedOpener(n -> {
            throw new BackendException(Errno.ENOENT, "cannot open image rbd/gone");
        });
        TestProbe<ImageSupervisor.Report> reports = testKit.createTestProbe();
        ReopenableBackend image = supervised(testKit, first, opener, quick(3), reports.getRef());
        loseHandle(image, first);
        CompletionStage<ByteString> waiting = image.read(0, 512);
        reports.expectMessageClass(ImageSupervisor.ImageLost.class);
        assertEquals(1, reports.expectMessageClass(ImageSupervisor.ReopenFailed.class).attempt());
        assertEquals(2, reports.expectMessageClass(ImageSupervisor.ReopenFailed.class).attempt());
        ImageSupervisor.GaveUp gaveUp = reports.expectMessageClass(ImageSupervisor.GaveUp.class);
        assertEquals(3, gaveUp.attempts());
        assertTrue(gaveUp.reason().contains("ENOENT"), gaveUp.reason());

        BackendException w = failure(waiting);
        assertEquals(Errno.EIO, w.errno());
        assertTrue(w.getMessage().contains("gave up reopening") && w.getMessage().contains("rbd/gone"), w.getMessage());
        CompletableFuture<Void> later = image.flush().toCompletableFuture();
        assertTrue(later.isCompletedExceptionally(), "answered at once");
        reports.expectNoMessage(Duration.ofMillis(300));
        assertEquals(3, opener.calls(), "no attempt after giving up");
    }

    @Test
    void aCloseThatHangsIsAbandonedAndTheImageReopenedAnyway() throws Exception {
        CountDownLatch never = new CountDownLatch(1);
        ScriptedBackend first = handleOn(new MemoryBackend(SIZE));
        first.closeWith(() -> { // blocks its thread, as a close stuck on a dead connection would
            try {
                never.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return CompletableFuture.completedFuture(null);
        });
        ScriptedOpener opener = new ScriptedOpener(n -> handleOn(new MemoryBackend(SIZE)));
        TestProbe<ImageSupervisor.Report> reports = testKit.createTestProbe();
        ReopenSettings s = settings(Duration.ofMillis(20), Duration.ofMillis(100), 0, 0, Duration.ofSeconds(10),
                Duration.ofMillis(200));
        ReopenableBackend image = supervised(testKit, first, opener, s, reports.getRef());
        try {
            loseHandle(image, first);
            reports.expectMessageClass(ImageSupervisor.ImageLost.class);
            reports.expectMessageClass(ImageSupervisor.Reopened.class, Duration.ofSeconds(5));
            assertEquals(1, first.closes.get());
            assertEquals(1, never.getCount(), "the close is still stuck");
            image.flush().toCompletableFuture().get(10, TimeUnit.SECONDS);
        } finally {
            never.countDown();
        }
    }

    @Test
    void aFaultInOneImageLeavesAnotherUntouched() throws Exception {
        ScriptedBackend a = handleOn(new MemoryBackend(SIZE));
        ScriptedBackend b = handleOn(new MemoryBackend(SIZE));
        ScriptedOpener openA = new ScriptedOpener(n -> handleOn(new MemoryBackend(SIZE)));
        ScriptedOpener openB = new ScriptedOpener(n -> handleOn(new MemoryBackend(SIZE)));
        TestProbe<ImageSupervisor.Report> reportsA = testKit.createTestProbe();
        TestProbe<ImageSupervisor.Report> reportsB = testKit.createTestProbe();
        ReopenableBackend imageA = supervised(testKit, a, openA, quick(0), reportsA.getRef());
        ReopenableBackend imageB = supervised(testKit, b, openB, quick(0), reportsB.getRef());
        b.setFault(b.holding());
        List<CompletionStage<Void>> onB = List.of(imageB.flush(), imageB.write(0, ByteString.fromArray(new byte[8]), false));

        loseHandle(imageA, a);
        reportsA.expectMessageClass(ImageSupervisor.ImageLost.class);
        reportsA.expectMessageClass(ImageSupervisor.Reopened.class);
        reportsB.expectNoMessage(Duration.ofMillis(200));
        onB.forEach(c -> assertFalse(c.toCompletableFuture().isDone(), "B's calls in flight are not touched"));
        assertTrue(imageB.isUp());
        assertEquals(0, imageB.generation());
        assertEquals(0, openB.calls());
        assertEquals(0, b.closes.get());
        b.releaseAll();
        b.setFault(op -> null);
        for (CompletionStage<Void> c : onB) {
            c.toCompletableFuture().get(10, TimeUnit.SECONDS);
        }
        imageB.read(0, 8).toCompletableFuture().get(10, TimeUnit.SECONDS);
    }

    @Test
    void settingsComeFromReferenceConfAndTheBackoffStaysWithinItsRandomFactor() {
        ReopenSettings s = ReopenSettings.from(ConfigFactory.load());
        assertEquals(Duration.ofSeconds(1), s.minBackoff());
        assertEquals(Duration.ofSeconds(30), s.maxBackoff());
        assertEquals(0.2, s.randomFactor());
        assertEquals(0, s.maxAttempts());
        assertEquals(Duration.ofSeconds(20), s.requestWait());
        assertEquals(Duration.ofSeconds(10), s.closeTimeout());
        assertEquals(Duration.ofSeconds(1), s.backoff(1, 0));
        assertEquals(Duration.ofMillis(1200), s.backoff(1, 1));
        assertEquals(Duration.ofSeconds(16), s.backoff(5, 0));
        assertEquals(Duration.ofSeconds(30), s.backoff(6, 0));
        assertEquals(Duration.ofSeconds(36), s.backoff(1000, 1));
        assertTrue(s.backoff(3, 0.5).compareTo(Duration.ofMillis(4400)) == 0);
    }

    @Test
    void badSettingsAreRefusedWithTheKeyNamed() {
        com.typesafe.config.ConfigException e = org.junit.jupiter.api.Assertions.assertThrows(com.typesafe.config.ConfigException.class,
                () -> ReopenSettings.from(ConfigFactory.parseString("rbdnbd.reopen.max-backoff = 100 ms")
                        .withFallback(ConfigFactory.load())));
        assertTrue(e.getMessage().contains("max-backoff"), e.getMessage());
    }
}
