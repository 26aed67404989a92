package io.rbdnbd.engine.protocol;

import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class RequestDecoderTest {
    private static final int MAX = 32 << 20;
    private static final BadClientLog LOG = new BadClientLog(Duration.ZERO);
    private static ActorSystem system;

    @BeforeAll
    static void start() {
        system = ActorSystem.create("decoder-test");
    }

    @AfterAll
    static void stop() {
        system.terminate();
    }

    @ParameterizedTest(name = "type {0} flags {1} length {2} -> errno {3}")
    @CsvSource({
            // every command, no flags
            "0, 0, 4096, 0", "1, 0, 4096, 0", "2, 0, 0, 0", "3, 0, 0, 0", "4, 0, 4096, 0", "5, 0, 4096, 0",
            "6, 0, 4096, 0", "7, 0, 4096, 0",
            // unknown commands
            "8, 0, 0, 22", "99, 0, 0, 22", "65535, 0, 0, 22",
            // FUA is accepted on every command
            "0, 1, 512, 0", "1, 1, 512, 0", "3, 1, 0, 0", "4, 1, 512, 0", "6, 1, 512, 0", "7, 1, 512, 0",
            // NO_HOLE and FAST_ZERO only with WRITE_ZEROES
            "6, 2, 512, 0", "6, 16, 512, 0", "6, 19, 512, 0", "1, 2, 512, 22", "4, 2, 512, 22", "0, 16, 512, 22",
            // DF only with READ
            "0, 4, 512, 0", "1, 4, 512, 22", "7, 4, 512, 22",
            // REQ_ONE only with BLOCK_STATUS
            "7, 8, 512, 0", "0, 8, 512, 22", "6, 8, 512, 22",
            // unknown flag bits
            "0, 32, 512, 22", "1, 32768, 512, 22",
            // READ length over the maximum payload; TRIM, WRITE_ZEROES and BLOCK_STATUS may be longer
            "0, 0, 33554432, 0", "0, 0, 33554433, 22", "4, 0, 4294967295, 0", "6, 0, 4294967295, 0",
            "7, 0, 4294967295, 0",
    })
    void validateTable(int type, int flags, long length, int errno) {
        assertEquals(errno, RequestDecoder.validate(type, flags, length, MAX));
    }

    private static List<NbdRequest> decode(List<ByteString> chunks) throws Exception {
        return Source.from(chunks).via(new RequestDecoder(MAX, Duration.ZERO, "test", Admission.UNLIMITED, LOG)).runWith(Sink.seq(), system)
                .toCompletableFuture().get(10, TimeUnit.SECONDS);
    }

    /** An admission that refuses until opened, counting its wake-ups. */
    private static final class Gate implements Admission {
        volatile boolean open;
        final List<Runnable> waiters = new java.util.concurrent.CopyOnWriteArrayList<>();
        final java.util.concurrent.atomic.AtomicLong admitted = new java.util.concurrent.atomic.AtomicLong();

        @Override
        public boolean tryAcquire(long bytes) {
            if (open) {
                admitted.addAndGet(bytes);
            }
            return open;
        }

        @Override
        public void onRelease(Runnable wakeUp) {
            waiters.add(wakeUp);
        }

        void openAndWake() {
            open = true;
            waiters.forEach(Runnable::run);
        }
    }

    /** A WRITE's payload is admitted before it is read: while it does not fit, no more bytes are taken in. */
    @Test
    void aWriteWhosePayloadDoesNotFitIsNotReadFurther() throws Exception {
        byte[] data = new byte[1 << 20];
        new java.util.Random(3).nextBytes(data);
        ByteString wire = Frames.write(7, 4096, data).concat(Frames.read(8, 0, 512));
        List<ByteString> chunks = new ArrayList<>();
        for (int i = 0; i < wire.size(); i += 4096) {
            chunks.add(wire.slice(i, Math.min(wire.size(), i + 4096)));
        }
        java.util.concurrent.atomic.AtomicInteger taken = new java.util.concurrent.atomic.AtomicInteger();
        java.util.Iterator<ByteString> it = chunks.iterator();
        Gate gate = new Gate();
        java.util.concurrent.CompletionStage<List<NbdRequest>> out = Source.fromIterator(() -> new java.util.Iterator<ByteString>() {
                    @Override
                    public boolean hasNext() {
                        return it.hasNext();
                    }

                    @Override
                    public ByteString next() {
                        taken.incrementAndGet();
                        return it.next();
                    }
                })
                .via(new RequestDecoder(MAX, Duration.ZERO, "test", gate, LOG)).runWith(Sink.seq(), system);
        Thread.sleep(300);
        assertEquals(1, taken.get(), "only the chunk with the header was read");
        assertEquals(1, gate.waiters.size(), "one wake-up asked for");
        gate.openAndWake();
        List<NbdRequest> rs = out.toCompletableFuture().get(10, TimeUnit.SECONDS);
        assertEquals(chunks.size(), taken.get());
        assertEquals(2, rs.size());
        assertArrayEquals(data, rs.get(0).payload().toArray());
        assertEquals((1 << 20) + 512, gate.admitted.get(), "the payload, then the READ's data");
    }

    /** A client that announces a WRITE and stops sending its payload is closed after the payload timeout. */
    @Test
    void aStalledPayloadClosesTheConnection() throws Exception {
        ByteString wire = Frames.read(1, 0, 512).concat(Frames.write(2, 0, new byte[65536]));
        long start = System.nanoTime();
        List<NbdRequest> rs = Source.single(wire.take(wire.size() - 1)).concat(Source.maybe())
                .via(new RequestDecoder(MAX, Duration.ofMillis(300), "test", Admission.UNLIMITED, LOG))
                .runWith(Sink.seq(), system).toCompletableFuture().get(10, TimeUnit.SECONDS);
        long ms = (System.nanoTime() - start) / 1_000_000;
        assertEquals(1, rs.size(), "the READ before it still goes through");
        assertEquals(Nbd.CMD_READ, rs.get(0).type());
        assertTrue(ms >= 300, "closed after " + ms + " ms");
    }

    @Test
    void anInvalidWriteStillHasItsPayloadAdmittedButAnInvalidReadHoldsNothing() {
        assertEquals(4096, NbdRequest.weight(Nbd.CMD_WRITE, 4096, Nbd.EINVAL));
        assertEquals(0, NbdRequest.weight(Nbd.CMD_READ, MAX + 1L, Nbd.EINVAL));
        assertEquals(512, NbdRequest.weight(Nbd.CMD_READ, 512, 0));
        assertEquals(0, NbdRequest.weight(Nbd.CMD_TRIM, 1 << 30, 0));
    }

    private static ByteString sampleStream() {
        byte[] data = new byte[1000];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i * 7);
        }
        return Frames.read(1, 0, 4096)
                .concat(Frames.write(2, 512, data))
                .concat(Frames.request(Nbd.CMD_FLUSH, 0, 3, 0, 0, null))
                .concat(Frames.request(Nbd.CMD_TRIM, Nbd.CMD_FLAG_FUA, 4, 8192, 65536, null))
                .concat(Frames.request(Nbd.CMD_WRITE_ZEROES, Nbd.CMD_FLAG_NO_HOLE, 5, 0, 1 << 20, null))
                .concat(Frames.request(Nbd.CMD_BLOCK_STATUS, Nbd.CMD_FLAG_REQ_ONE, 6, 0, 1 << 30, null))
                .concat(Frames.request(Nbd.CMD_CACHE, 0, 7, 4096, 4096, null))
                .concat(Frames.write(8, 0, new byte[0]))
                .concat(Frames.request(42, 0, 9, 0, 0, null));
    }

    private static void assertSample(List<NbdRequest> rs) {
        assertEquals(9, rs.size(), rs.toString());
        assertEquals(Nbd.CMD_READ, rs.get(0).type());
        assertEquals(4096, rs.get(0).length());
        NbdRequest w = rs.get(1);
        assertEquals(Nbd.CMD_WRITE, w.type());
        assertEquals(2, w.handle());
        assertEquals(512, w.offset());
        assertEquals(1000, w.payload().size());
        for (int i = 0; i < 1000; i++) {
            assertEquals((byte) (i * 7), w.payload().apply(i));
        }
        assertEquals(Nbd.CMD_FLUSH, rs.get(2).type());
        assertEquals(Nbd.CMD_TRIM, rs.get(3).type());
        assertTrue(rs.get(3).hasFlag(Nbd.CMD_FLAG_FUA));
        assertEquals(65536, rs.get(3).length());
        assertTrue(rs.get(4).hasFlag(Nbd.CMD_FLAG_NO_HOLE));
        assertEquals(1 << 30, rs.get(5).length());
        assertEquals(Nbd.CMD_CACHE, rs.get(6).type());
        assertEquals(0, rs.get(7).payload().size());
        assertEquals(Nbd.EINVAL, rs.get(8).rejectErrno());
        for (int i = 0; i < 8; i++) {
            assertEquals(0, rs.get(i).rejectErrno(), rs.get(i).toString());
            assertEquals(i + 1, rs.get(i).handle());
        }
    }

    @Test
    void decodesWholeStream() throws Exception {
        assertSample(decode(List.of(sampleStream())));
    }

    @Test
    void decodesStreamSplitAtEveryByteBoundary() throws Exception {
        ByteString all = sampleStream();
        for (int cut = 1; cut < all.size(); cut++) {
            assertSample(decode(List.of(all.take(cut), all.drop(cut))));
        }
    }

    @Test
    void decodesStreamDeliveredOneByteAtATime() throws Exception {
        ByteString all = sampleStream();
        List<ByteString> bytes = new ArrayList<>();
        for (int i = 0; i < all.size(); i++) {
            bytes.add(all.slice(i, i + 1));
        }
        assertSample(decode(bytes));
    }

    @Test
    void writePayloadIsASliceNotACopy() throws Exception {
        byte[] data = new byte[8192];
        data[0] = 1;
        ByteString frame = Frames.write(1, 0, data);
        NbdRequest w = decode(List.of(frame)).get(0);
        assertArrayEquals(data, w.payload().toArray());
        assertEquals(8192, w.weight());
    }

    @Test
    void badMagicEndsTheStreamAfterEarlierRequests() throws Exception {
        ByteString bad = Frames.read(1, 0, 512).concat(ByteString.fromArray(new byte[28])).concat(Frames.read(2, 0, 512));
        List<NbdRequest> rs = decode(List.of(bad));
        assertEquals(1, rs.size());
        assertEquals(1, rs.get(0).handle());
    }

    @Test
    void writeOverTheMaximumPayloadEndsTheStream() throws Exception {
        ByteString huge = Frames.request(Nbd.CMD_WRITE, 0, 1, 0, MAX + 1L, null).concat(Frames.read(2, 0, 512));
        assertEquals(List.of(), decode(List.of(huge)));
    }

    @Test
    void disconnectEndsTheStreamAndIsNotEmitted() throws Exception {
        ByteString s = Frames.read(1, 0, 512).concat(Frames.request(Nbd.CMD_DISC, 0, 2, 0, 0, null))
                .concat(Frames.read(3, 0, 512));
        List<NbdRequest> rs = decode(List.of(s));
        assertEquals(1, rs.size());
        assertEquals(1, rs.get(0).handle());
    }

    @Test
    void truncatedRequestAtEndOfStreamIsDropped() throws Exception {
        ByteString s = Frames.read(1, 0, 512).concat(Frames.write(2, 0, new byte[100]).take(60));
        List<NbdRequest> rs = decode(List.of(s));
        assertEquals(1, rs.size());
    }
}
