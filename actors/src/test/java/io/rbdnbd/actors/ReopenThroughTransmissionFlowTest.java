package io.rbdnbd.actors;

import io.rbdnbd.engine.Await;
import io.rbdnbd.engine.backend.BackendException;
import io.rbdnbd.engine.backend.MemoryBackend;
import io.rbdnbd.engine.backend.ReopenableBackend;
import io.rbdnbd.engine.backend.ScriptedBackend;
import io.rbdnbd.engine.protocol.Frames;
import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.engine.stream.InFlightBudget;
import io.rbdnbd.engine.stream.IoStats;
import io.rbdnbd.engine.stream.Outbound;
import io.rbdnbd.engine.stream.TransmissionFlow;
import io.rbdnbd.nativeio.Errno;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.japi.Pair;
import org.apache.pekko.stream.javadsl.Keep;
import org.apache.pekko.stream.testkit.TestPublisher;
import org.apache.pekko.stream.testkit.TestSubscriber;
import org.apache.pekko.stream.testkit.javadsl.TestSink;
import org.apache.pekko.stream.testkit.javadsl.TestSource;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A lost handle as NBD clients see it: the engine's real transmission flow, fed encoded requests,
 * over a {@link ReopenableBackend} whose {@link ImageSupervisor} reopens it.
 */
class ReopenThroughTransmissionFlowTest {
    private static final long SIZE = 1 << 20;
    private static final int BLOCK = 4096;
    private static final int IODEPTH = 8;
    private static final long MAX_BYTES = 6 * BLOCK;
    private static final ActorTestKit testKit = ActorTestKit.create();
    private static final ActorSystem<Void> system = testKit.system();

    @AfterAll
    static void shutdown() {
        testKit.shutdownTestKit();
    }

    /** The shipped dispatcher; quick backoff. */
    private static ReopenSettings reopen() {
        return new ReopenSettings(Duration.ofMillis(20), Duration.ofMillis(100), 0.2, 0, Duration.ofSeconds(10),
                Duration.ofSeconds(1), "rbdnbd.reopen.dispatcher-config");
    }

    private static EngineSettings engine() {
        return EngineSettings.with("iodepth", IODEPTH, "max-in-flight-bytes", MAX_BYTES,
                "max-in-flight-bytes-per-connection", MAX_BYTES);
    }

    private static byte[] block(int seed) {
        byte[] b = new byte[BLOCK];
        for (int i = 0; i < BLOCK; i++) {
            b[i] = (byte) (i * 31 + seed + 1);
        }
        return b;
    }

    /** One connection's flow over {@code backend}, with the engine's side of it measured. */
    private static final class Connection {
        final InFlightBudget budget = new InFlightBudget(MAX_BYTES);
        final ScriptedBackend engineSide; // what the engine has in flight, whether on a handle or waiting
        final AtomicLong maxBytes = new AtomicLong();
        final TestPublisher.Probe<ByteString> in;
        final TestSubscriber.Probe<ByteString> out;
        final Map<Long, Integer> readLengths = new HashMap<>();
        final Map<Long, Frames.Reply> replies = new HashMap<>();

        Connection(ReopenableBackend image) {
            engineSide = new ScriptedBackend(image);
            engineSide.setFault(op -> {
                maxBytes.accumulateAndGet(budget.used(), Math::max);
                return null;
            });
            Pair<TestPublisher.Probe<ByteString>, TestSubscriber.Probe<ByteString>> probes =
                    TestSource.<ByteString>probe(system.classicSystem())
                            .via(TransmissionFlow.create(engineSide, engine(), false, false, false, budget,
                                    new IoStats(), "test", new io.rbdnbd.engine.protocol.BadClientLog(java.time.Duration.ZERO)))
                .map(Outbound::sent)
                            .toMat(TestSink.probe(system.classicSystem()), Keep.both())
                            .run(system);
            in = probes.first();
            out = probes.second();
            out.request(100_000);
        }

        void write(long handle, int blockNo, byte[] data) {
            in.sendNext(Frames.write(handle, (long) blockNo * BLOCK, data));
        }

        void read(long handle, int blockNo) {
            readLengths.put(handle, BLOCK);
            in.sendNext(Frames.read(handle, (long) blockNo * BLOCK, BLOCK));
        }

        void flush(long handle) {
            in.sendNext(Frames.request(Nbd.CMD_FLUSH, 0, handle, 0, 0, null));
        }

        /** The next {@code n} replies; fails on a second reply to any handle. */
        List<Frames.Reply> replies(int n) {
            List<Frames.Reply> got = new ArrayList<>();
            while (got.size() < n) {
                ByteString bytes = out.expectNext(Duration.ofSeconds(5));
                for (Frames.Reply r : Frames.parse(bytes, h -> readLengths.getOrDefault(h, -1))) {
                    assertNull(replies.putIfAbsent(r.handle(), r), "a second reply to handle " + r.handle());
                    got.add(r);
                }
            }
            assertEquals(n, got.size(), "more replies than requests");
            return got;
        }

        void end() {
            out.expectNoMessage(Duration.ofMillis(100));
            in.sendComplete();
            out.expectComplete(); // the stream ends normally: a lost handle never fails it
            assertTrue(engineSide.maxInFlight.get() <= IODEPTH, "in flight " + engineSide.maxInFlight.get());
            assertTrue(maxBytes.get() <= MAX_BYTES, "bytes in flight " + maxBytes.get());
            assertEquals(0, budget.used());
        }
    }

    @Test
    void requestsOnTheLostHandleGetEioOthersWaitAndAreServedOnTheReopenedImage() throws Exception {
        MemoryBackend disk = new MemoryBackend(SIZE);
        ScriptedBackend first = ImageSupervisorTest.handleOn(disk);
        first.setFault(first.holdingAfter(10));
        CountDownLatch mayOpen = new CountDownLatch(1);
        List<ScriptedBackend> opened = new CopyOnWriteArrayList<>();
        ImageSupervisorTest.ScriptedOpener opener = new ImageSupervisorTest.ScriptedOpener(n -> {
            try {
                assertTrue(mayOpen.await(10, TimeUnit.SECONDS));
            } catch (InterruptedException e) {
                throw new IllegalStateException(e);
            }
            ScriptedBackend h = ImageSupervisorTest.handleOn(disk);
            opened.add(h);
            return h;
        });
        TestProbe<ImageSupervisor.Report> reports = testKit.createTestProbe();
        ReopenableBackend image = ImageSupervisorTest.supervised(testKit, first, opener, reopen(), reports.getRef());
        Connection c = new Connection(image);

        for (int i = 0; i < 10; i++) { // served by the first handle
            c.write(i, i, block(i));
        }
        c.replies(10).forEach(r -> assertEquals(0, r.error(), "handle " + r.handle()));

        for (int i = 0; i < 3; i++) { // reach the first handle and hang there
            c.write(100 + i, 20 + i, block(100 + i));
            c.flush(103 + i);
        }
        Await.until(() -> first.held.size() == 6);
        c.out.expectNoMessage(Duration.ofMillis(100));

        // the handle is lost: one call fails fatally, the dead handle never answers the other five
        first.failOldestHeld(BackendException.handleLost(Errno.ESHUTDOWN, "injected: client blocklisted"));
        List<Frames.Reply> failed = c.replies(6);
        for (Frames.Reply r : failed) {
            assertTrue(r.handle() >= 100 && r.handle() <= 105, "handle " + r.handle());
            assertEquals(Nbd.EIO, r.error(), "handle " + r.handle());
        }
        assertEquals(5, first.held.size(), "answered without the dead handle");
        reports.expectMessageClass(ImageSupervisor.ImageLost.class);

        for (int i = 0; i < 12; i++) { // sent while the image is being reopened: they wait
            c.read(200 + i, i);
        }
        c.out.expectNoMessage(Duration.ofMillis(300));
        assertTrue(c.budget.used() <= MAX_BYTES);
        mayOpen.countDown();
        reports.expectMessageClass(ImageSupervisor.Reopened.class);
        for (Frames.Reply r : c.replies(12)) {
            int blockNo = (int) (r.handle() - 200);
            assertEquals(0, r.error(), "handle " + r.handle());
            assertArrayEquals(blockNo < 10 ? block(blockNo) : new byte[BLOCK], r.data(), "block " + blockNo);
        }

        for (int i = 0; i < 5; i++) { // and later ones go straight to the new handle
            c.write(300 + i, 30 + i, block(300 + i));
        }
        c.replies(5).forEach(r -> assertEquals(0, r.error(), "handle " + r.handle()));
        // the first flush since the loss cannot vouch for the ten writes acknowledged before it; the next can
        c.flush(305);
        assertEquals(Nbd.EIO, c.replies(1).get(0).error());
        c.flush(306);
        assertEquals(0, c.replies(1).get(0).error());
        c.end();

        assertEquals(10 + 6 + 12 + 7, c.replies.size(), "one reply per request");
        c.replies.values().forEach(r -> assertEquals(r.handle() >= 100 && r.handle() <= 105 || r.handle() == 305
                ? Nbd.EIO : 0, r.error(), "handle " + r.handle()));
        assertEquals(1, opener.calls(), "reopened once");
        assertEquals(1, opened.size());
        assertEquals(16, first.calls.get());
        assertEquals(18, opened.get(0).calls.get(), "all but the failed flush");
        assertEquals(1, first.closes.get());
    }

    @Test
    void aHandleGoingFatalAfterNCallsFailsExactlyThatRequestAndTheRestLand() throws Exception {
        MemoryBackend disk = new MemoryBackend(SIZE);
        ScriptedBackend first = ImageSupervisorTest.handleOn(disk);
        first.setFault(ScriptedBackend.fatalAfter(10, Errno.ESHUTDOWN));
        ImageSupervisorTest.ScriptedOpener opener =
                new ImageSupervisorTest.ScriptedOpener(n -> ImageSupervisorTest.handleOn(disk));
        TestProbe<ImageSupervisor.Report> reports = testKit.createTestProbe();
        ReopenableBackend image = ImageSupervisorTest.supervised(testKit, first, opener, reopen(), reports.getRef());
        Connection c = new Connection(image);

        for (int i = 0; i < 30; i++) { // all at once: the engine issues them in order, iodepth and budget permitting
            c.write(i, i, block(i));
        }
        List<Frames.Reply> written = c.replies(30);
        reports.expectMessageClass(ImageSupervisor.ImageLost.class);
        reports.expectMessageClass(ImageSupervisor.Reopened.class);
        for (Frames.Reply r : written) {
            assertEquals(r.handle() == 10 ? Nbd.EIO : 0, r.error(), "handle " + r.handle());
        }
        for (int i = 0; i < 30; i++) {
            c.read(100 + i, i);
        }
        for (Frames.Reply r : c.replies(30)) {
            int blockNo = (int) (r.handle() - 100);
            assertEquals(0, r.error());
            assertArrayEquals(blockNo == 10 ? new byte[BLOCK] : block(blockNo), r.data(), "block " + blockNo);
        }
        c.flush(200);
        assertEquals(Nbd.EIO, c.replies(1).get(0).error(), "ten writes were acknowledged, unflushed, when the handle went");
        c.flush(201);
        assertEquals(0, c.replies(1).get(0).error());
        c.end();
        assertEquals(11, first.calls.get(), "nothing more reached the lost handle");
        assertEquals(1, opener.calls());
    }
}
