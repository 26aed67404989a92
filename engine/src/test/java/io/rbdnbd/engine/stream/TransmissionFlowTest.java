package io.rbdnbd.engine.stream;

import io.rbdnbd.engine.Await;
import io.rbdnbd.engine.backend.BackendException;
import io.rbdnbd.engine.backend.MemoryBackend;
import io.rbdnbd.engine.backend.ScriptedBackend;
import io.rbdnbd.engine.protocol.Frames;
import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.nativeio.Errno;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.japi.Pair;
import org.apache.pekko.stream.javadsl.Keep;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.stream.testkit.TestPublisher;
import org.apache.pekko.stream.testkit.TestSubscriber;
import org.apache.pekko.stream.testkit.javadsl.TestSink;
import org.apache.pekko.stream.testkit.javadsl.TestSource;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TransmissionFlowTest {
    private static final long SIZE = 16L << 20;
    private static ActorSystem system;

    @BeforeAll
    static void start() {
        system = ActorSystem.create("flow-test");
    }

    @AfterAll
    static void stop() {
        system.terminate();
    }

    private static EngineSettings settings(int iodepth, long inFlightBytes) {
        return EngineSettings.with("iodepth", iodepth, "max-in-flight-bytes", inFlightBytes,
                "max-in-flight-bytes-per-connection", inFlightBytes);
    }

    /** Runs requests through a fresh flow; returns replies by handle. */
    private static Map<Long, Frames.Reply> run(io.rbdnbd.engine.backend.BlockBackend backend, boolean structured,
                                               boolean readOnly, Map<Long, Integer> readLengths, ByteString... requests)
            throws Exception {
        return run(backend, structured, readOnly, new IoStats(), readLengths, requests);
    }

    /** Likewise, recording into {@code stats}. */
    private static Map<Long, Frames.Reply> run(io.rbdnbd.engine.backend.BlockBackend backend, boolean structured,
                                               boolean readOnly, IoStats stats, Map<Long, Integer> readLengths,
                                               ByteString... requests) throws Exception {
        ByteString out = Source.from(List.of(requests))
                .via(TransmissionFlow.create(backend, settings(256, 64 << 20), structured, structured, readOnly,
                        new InFlightBudget(64 << 20), stats, "test", new io.rbdnbd.engine.protocol.BadClientLog(java.time.Duration.ZERO)))
                .map(Outbound::sent)
                .runWith(Sink.fold(ByteString.emptyByteString(), ByteString::concat), system)
                .toCompletableFuture().get(10, TimeUnit.SECONDS);
        return Frames.parse(out, h -> readLengths.getOrDefault(h, -1)).stream()
                .collect(Collectors.toMap(Frames.Reply::handle, r -> r));
    }

    @Test
    void writeThenReadBackSimpleReplies() throws Exception {
        MemoryBackend m = new MemoryBackend(SIZE);
        byte[] data = BlockBackendData.pattern(8192, 3);
        Map<Long, Frames.Reply> w = run(m, false, false, Map.of(), Frames.write(1, 4096, data),
                Frames.request(Nbd.CMD_FLUSH, 0, 2, 0, 0, null));
        assertEquals(0, w.get(1L).error());
        assertEquals(0, w.get(2L).error());
        Map<Long, Frames.Reply> r = run(m, false, false, Map.of(3L, 8192), Frames.read(3, 4096, 8192));
        assertArrayEquals(data, r.get(3L).data());
    }

    @Test
    void structuredReadAndBlockStatus() throws Exception {
        MemoryBackend m = new MemoryBackend(SIZE);
        Map<Long, Frames.Reply> rs = run(m, true, false, Map.of(),
                Frames.write(1, 1 << 20, new byte[65536]),
                Frames.read(2, 0, 512),
                Frames.request(Nbd.CMD_BLOCK_STATUS, 0, 3, 0, 4 << 20, null),
                Frames.request(Nbd.CMD_BLOCK_STATUS, Nbd.CMD_FLAG_REQ_ONE, 4, 0, 4 << 20, null));
        // replies come in completion order; the write may land after the block status, so only
        // shapes are checked here and contents in the backend contract suite
        assertEquals(Nbd.REPLY_TYPE_OFFSET_DATA, rs.get(2L).type());
        assertEquals(512, rs.get(2L).data().length);
        assertEquals(Nbd.REPLY_TYPE_BLOCK_STATUS, rs.get(3L).type());
        assertEquals(1, rs.get(4L).extents().size());
        assertTrue((rs.get(3L).flags() & Nbd.REPLY_FLAG_DONE) != 0);
    }

    @Test
    void rangeReadOnlyAndInvalidRequestsGetTheirErrnosAndTheStreamCarriesOn() throws Exception {
        MemoryBackend m = new MemoryBackend(SIZE);
        Map<Long, Frames.Reply> rs = run(m, false, false, Map.of(9L, 512),
                Frames.read(1, SIZE - 511, 512),
                Frames.write(2, SIZE, new byte[1]),
                Frames.request(Nbd.CMD_TRIM, 0, 3, SIZE - 1, 2, null),
                Frames.request(Nbd.CMD_WRITE_ZEROES, 0, 4, SIZE, 1, null),
                Frames.request(77, 0, 5, 0, 0, null),
                Frames.request(Nbd.CMD_READ, Nbd.CMD_FLAG_NO_HOLE, 6, 0, 512, null),
                Frames.request(Nbd.CMD_BLOCK_STATUS, 0, 7, 0, 512, null), // not negotiated
                Frames.request(Nbd.CMD_CACHE, 0, 8, SIZE, 1, null),
                Frames.read(9, SIZE - 512, 512));
        assertEquals(Nbd.EINVAL, rs.get(1L).error());
        assertEquals(Nbd.ENOSPC, rs.get(2L).error());
        assertEquals(Nbd.EINVAL, rs.get(3L).error());
        assertEquals(Nbd.ENOSPC, rs.get(4L).error());
        assertEquals(Nbd.EINVAL, rs.get(5L).error());
        assertEquals(Nbd.EINVAL, rs.get(6L).error());
        assertEquals(Nbd.EINVAL, rs.get(7L).error());
        assertEquals(Nbd.EINVAL, rs.get(8L).error());
        assertEquals(0, rs.get(9L).error());
        assertEquals(9, rs.size());

        Map<Long, Frames.Reply> ro = run(m, false, true, Map.of(4L, 512),
                Frames.write(1, 0, new byte[512]),
                Frames.request(Nbd.CMD_TRIM, 0, 2, 0, 512, null),
                Frames.request(Nbd.CMD_WRITE_ZEROES, 0, 3, 0, 512, null),
                Frames.read(4, 0, 512),
                Frames.request(Nbd.CMD_FLUSH, 0, 5, 0, 0, null));
        assertEquals(Nbd.EPERM, ro.get(1L).error());
        assertEquals(Nbd.EPERM, ro.get(2L).error());
        assertEquals(Nbd.EPERM, ro.get(3L).error());
        assertEquals(0, ro.get(4L).error());
        assertEquals(0, ro.get(5L).error());
    }

    @Test
    void backendFailuresBecomeErrorRepliesForExactlyThoseRequests() throws Exception {
        ScriptedBackend b = new ScriptedBackend(new MemoryBackend(SIZE));
        b.setFault(ScriptedBackend.failing(ScriptedBackend.Op.WRITE, Nbd.ENOSPC));
        ByteString[] reqs = new ByteString[40];
        Map<Long, Integer> lengths = new HashMap<>();
        for (int i = 0; i < 40; i++) {
            reqs[i] = i % 2 == 0 ? Frames.write(i, i * 4096L, new byte[4096]) : Frames.read(i, i * 4096L, 4096);
            lengths.put((long) i, 4096);
        }
        Map<Long, Frames.Reply> rs = run(b, true, false, lengths, reqs);
        assertEquals(40, rs.size());
        for (int i = 0; i < 40; i++) {
            assertEquals(i % 2 == 0 ? Nbd.ENOSPC : 0, rs.get((long) i).error(), "request " + i);
        }
        b.setFault(op -> {
            throw new IllegalStateException("backend bug");
        });
        Map<Long, Frames.Reply> thrown = run(b, false, false, Map.of(), Frames.request(Nbd.CMD_FLUSH, 0, 1, 0, 0, null));
        assertEquals(Nbd.EIO, thrown.get(1L).error());
    }

    @Test
    void aFailingBackendsErrorsAreCountedByTheErrnoItReported() throws Exception {
        ScriptedBackend b = new ScriptedBackend(new MemoryBackend(SIZE));
        b.setFault(ScriptedBackend.failing(ScriptedBackend.Op.WRITE, Errno.ETIMEDOUT)); // goes out as EIO
        IoStats stats = new IoStats();
        ByteString[] reqs = new ByteString[22];
        Map<Long, Integer> lengths = new HashMap<>();
        for (int i = 0; i < 20; i++) {
            reqs[i] = i % 2 == 0 ? Frames.write(i, i * 4096L, new byte[4096]) : Frames.read(i, i * 4096L, 4096);
            lengths.put((long) i, 4096);
        }
        reqs[20] = Frames.read(20, SIZE, 512); // refused: beyond the end
        reqs[21] = Frames.request(77, 0, 21, 0, 0, null); // rejected by the decoder
        Map<Long, Frames.Reply> rs = run(b, false, false, stats, lengths, reqs);
        assertEquals(22, rs.size());
        assertEquals(Nbd.EIO, rs.get(0L).error(), "ETIMEDOUT is not an NBD error");

        IoStats.Snapshot s = stats.snapshot();
        assertEquals(10, s.requests().get("write"));
        assertEquals(11, s.requests().get("read"));
        assertEquals(1, s.requests().get("other"));
        assertEquals(10, s.errors().get("write"));
        assertEquals(1, s.errors().get("read"));
        assertEquals(0, s.bytes().get("write"), "failed writes moved no bytes");
        assertEquals(10 * 4096, s.bytes().get("read"));
        assertEquals(Map.of("EINVAL", 2L, "ETIMEDOUT", 10L), s.errorsByErrno());
        assertEquals(0, s.inFlight());
    }

    @Test
    void inFlightCountsHeldRequestsAndFallsBackToZeroOnceAnswered() {
        ScriptedBackend b = new ScriptedBackend(new MemoryBackend(SIZE));
        b.setFault(b.holding());
        IoStats stats = new IoStats();
        Pair<TestPublisher.Probe<ByteString>, TestSubscriber.Probe<ByteString>> probes = TestSource.<ByteString>probe(system)
                .via(TransmissionFlow.create(b, settings(8, 64 << 20), false, false, false,
                        new InFlightBudget(64 << 20), stats, "test", new io.rbdnbd.engine.protocol.BadClientLog(java.time.Duration.ZERO)))
                .map(Outbound::sent)
                .toMat(TestSink.probe(system), Keep.both())
                .run(system);
        probes.second().request(100);
        ByteString all = ByteString.emptyByteString();
        for (int i = 0; i < 5; i++) {
            all = all.concat(Frames.request(Nbd.CMD_FLUSH, 0, i, 0, 0, null));
        }
        probes.first().sendNext(all);
        Await.until(() -> b.held.size() == 5);
        assertEquals(5, stats.snapshot().inFlight());
        b.failOldestHeld(BackendException.handleLost(Errno.ESHUTDOWN, "blocklisted"));
        b.failOldestHeld(new BackendException(Errno.EIO, "injected"));
        b.releaseAll();
        int replies = 0;
        while (replies < 5) {
            replies += probes.second().expectNext(Duration.ofSeconds(5)).size() / 16;
        }
        probes.first().sendComplete();
        probes.second().expectComplete();
        IoStats.Snapshot s = stats.snapshot();
        assertEquals(0, s.inFlight());
        assertEquals(5, s.requests().get("flush"));
        assertEquals(Map.of("EIO", 1L, "ESHUTDOWN", 1L), s.errorsByErrno());
    }

    @Test
    void inFlightIsBoundedByIodepthAndEveryHeldRequestIsAnsweredOnRelease() {
        ScriptedBackend b = new ScriptedBackend(new MemoryBackend(SIZE));
        b.setFault(b.holding());
        Pair<TestPublisher.Probe<ByteString>, TestSubscriber.Probe<ByteString>> probes = TestSource.<ByteString>probe(system)
                .via(TransmissionFlow.create(b, settings(8, 64 << 20), false, false, false,
                        new InFlightBudget(64 << 20), new IoStats(), "test", new io.rbdnbd.engine.protocol.BadClientLog(java.time.Duration.ZERO)))
                .map(Outbound::sent)
                .toMat(TestSink.probe(system), Keep.both())
                .run(system);
        TestPublisher.Probe<ByteString> in = probes.first();
        TestSubscriber.Probe<ByteString> out = probes.second();
        out.request(1000);
        ByteString all = ByteString.emptyByteString();
        for (int i = 0; i < 20; i++) {
            all = all.concat(Frames.request(Nbd.CMD_FLUSH, 0, i, 0, 0, null));
        }
        in.sendNext(all);
        Await.until(() -> b.calls.get() == 8);
        out.expectNoMessage(Duration.ofMillis(200));
        assertEquals(8, b.calls.get(), "iodepth bounds calls in flight");
        in.sendComplete();
        for (int round = 0; round < 10 && b.calls.get() < 20; round++) {
            b.releaseAll();
            Await.until(() -> b.held.size() > 0 || b.calls.get() == 20);
        }
        b.releaseAll();
        ByteString replies = ByteString.emptyByteString();
        while (replies.size() < 20 * 16) {
            replies = replies.concat(out.expectNext(Duration.ofSeconds(5)));
        }
        out.expectComplete();
        assertEquals(20, Frames.parse(replies, h -> -1).size());
        assertEquals(8, b.maxInFlight.get());
    }

    @Test
    void inFlightBytesAreBoundedByTheBudget() {
        ScriptedBackend b = new ScriptedBackend(new MemoryBackend(SIZE));
        b.setFault(b.holding());
        InFlightBudget budget = new InFlightBudget(64 * 1024);
        Pair<TestPublisher.Probe<ByteString>, TestSubscriber.Probe<ByteString>> probes = TestSource.<ByteString>probe(system)
                .via(TransmissionFlow.create(b, settings(256, 64 * 1024), false, false, false, budget,
                        new IoStats(), "test", new io.rbdnbd.engine.protocol.BadClientLog(java.time.Duration.ZERO)))
                .map(Outbound::sent)
                .toMat(TestSink.probe(system), Keep.both())
                .run(system);
        probes.second().request(1000);
        ByteString all = ByteString.emptyByteString();
        for (int i = 0; i < 10; i++) {
            all = all.concat(Frames.write(i, i * 32768L, new byte[32768]));
        }
        probes.first().sendNext(all);
        Await.until(() -> b.calls.get() == 2);
        probes.second().expectNoMessage(Duration.ofMillis(200));
        assertEquals(2, b.calls.get(), "two 32 KiB writes fill a 64 KiB budget");
        assertEquals(65536, budget.used());
        probes.first().sendComplete();
        for (int round = 0; round < 20 && b.calls.get() < 10; round++) {
            b.releaseAll();
            Await.until(() -> b.held.size() > 0 || b.calls.get() == 10);
        }
        b.releaseAll();
        int replies = 0;
        while (replies < 10) {
            replies += probes.second().expectNext(Duration.ofSeconds(5)).size() / 16;
        }
        probes.second().expectComplete();
        assertTrue(b.maxInFlight.get() <= 2, "max in flight " + b.maxInFlight.get());
        Await.until(() -> budget.used() == 0);
    }

    @Test
    void budgetHeldByACancelledConnectionIsGivenBack() {
        ScriptedBackend b = new ScriptedBackend(new MemoryBackend(SIZE));
        b.setFault(b.holding());
        InFlightBudget budget = new InFlightBudget(1 << 20);
        Pair<TestPublisher.Probe<ByteString>, TestSubscriber.Probe<ByteString>> probes = TestSource.<ByteString>probe(system)
                .via(TransmissionFlow.create(b, settings(256, 1 << 20), false, false, false, budget,
                        new IoStats(), "test", new io.rbdnbd.engine.protocol.BadClientLog(java.time.Duration.ZERO)))
                .map(Outbound::sent)
                .toMat(TestSink.probe(system), Keep.both())
                .run(system);
        probes.second().request(10);
        probes.first().sendNext(Frames.write(1, 0, new byte[4096]).concat(Frames.read(2, 0, 8192)));
        Await.until(() -> budget.used() == 4096 + 8192);
        probes.second().cancel();
        Await.until(() -> budget.used() == 0);
        b.releaseAll();
    }
}
