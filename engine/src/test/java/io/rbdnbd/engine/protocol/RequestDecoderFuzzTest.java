package io.rbdnbd.engine.protocol;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.util.ByteString;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Coverage-guided fuzzing of the request framing: any bytes, cut into chunks anywhere, give the
 * same requests as the same bytes in one piece; the stage never fails (it completes on bytes it
 * cannot frame); no WRITE payload exceeds the limit, and every field is what the header said.
 * Without JAZZER_FUZZ it replays the corpus in src/test/resources (part of every build); with
 * JAZZER_FUZZ=1 it fuzzes for maxDuration (scripts/test.sh does, one target at a time).
 */
class RequestDecoderFuzzTest {
    private static final int MAX = 64 * 1024;
    private static ActorSystem system;

    private static synchronized ActorSystem system() {
        if (system == null) {
            system = ActorSystem.create("decoder-fuzz");
        }
        return system;
    }

    private static List<NbdRequest> decode(List<ByteString> chunks) throws Exception {
        return Source.from(chunks)
                .via(new RequestDecoder(MAX, Duration.ZERO, "fuzz", Admission.UNLIMITED, new BadClientLog(Duration.ofHours(1))))
                .runWith(Sink.seq(), system()).toCompletableFuture().get(10, TimeUnit.SECONDS);
    }

    @FuzzTest(maxDuration = "30s")
    void anyBytesAnyChunking(FuzzedDataProvider data) throws Exception {
        int cuts = data.consumeInt(0, 8);
        List<Integer> sizes = new ArrayList<>();
        for (int i = 0; i < cuts; i++) {
            sizes.add(data.consumeInt(1, 64));
        }
        byte[] bytes = data.consumeRemainingAsBytes();
        ByteString all = ByteString.fromArray(bytes);
        List<ByteString> chunks = new ArrayList<>();
        int pos = 0;
        for (int size : sizes) {
            if (pos >= bytes.length) {
                break;
            }
            int end = Math.min(bytes.length, pos + size);
            chunks.add(all.slice(pos, end));
            pos = end;
        }
        if (pos < bytes.length) {
            chunks.add(all.slice(pos, bytes.length));
        }
        List<NbdRequest> whole = decode(List.of(all));
        List<NbdRequest> cut = decode(chunks);
        assertEquals(whole.size(), cut.size(), "requests in one piece and in chunks");
        for (int i = 0; i < whole.size(); i++) {
            NbdRequest a = whole.get(i);
            NbdRequest b = cut.get(i);
            assertEquals(a.toString(), b.toString());
            assertArrayEquals(a.payload().toArray(), b.payload().toArray());
            assertTrue(a.type() != Nbd.CMD_DISC, "DISC is never emitted");
            if (a.type() == Nbd.CMD_WRITE) {
                assertEquals(a.length(), a.payload().size(), "a WRITE carries exactly its payload");
                assertTrue(a.length() <= MAX, "WRITE payload over the limit");
            } else {
                assertEquals(0, a.payload().size());
            }
            assertEquals(RequestDecoder.validate(a.type(), a.flags(), a.length(), MAX), a.rejectErrno());
        }
        int consumed = 0;
        for (NbdRequest r : whole) {
            consumed += Nbd.REQUEST_HEADER_SIZE + r.payload().size();
        }
        assertTrue(consumed <= bytes.length);
    }
}
