package io.rbdnbd.engine.server;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.rbdnbd.engine.backend.MemoryBackend;
import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.protocol.ProtocolException;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.nio.ByteBuffer;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Coverage-guided fuzzing of the server handshake with any client bytes: it ends by entering
 * transmission, by the client's going away, or with a ProtocolException; everything it sent is a
 * greeting followed by well-framed option replies (and, for EXPORT_NAME, the export's size and
 * flags), never a reply to an option it could not read.
 */
class HandshakeFuzzTest {
    private static final Export EXPORT = new Export("disk", new MemoryBackend(1 << 20), false);

    @FuzzTest(maxDuration = "30s")
    void anyClientBytes(FuzzedDataProvider data) throws Exception {
        boolean validStart = data.consumeBoolean();
        byte[] rest = data.consumeRemainingAsBytes();
        ByteBuffer in = ByteBuffer.allocate(12 + rest.length);
        if (validStart) { // get past the client flags and first option magic more often
            in.putInt(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE | Nbd.CLIENT_FLAG_NO_ZEROES).putLong(Nbd.IHAVEOPT);
        }
        in.put(rest);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        Optional<Handshake.Result> result = Optional.empty();
        boolean transmission = false;
        try {
            result = new Handshake(EXPORT, 32 << 20, "fuzz").run(new ByteArrayInputStream(in.array(), 0, in.position()),
                    out);
            transmission = result.isPresent();
        } catch (ProtocolException | EOFException expected) {
            // a broken client, or one that went away mid-option
        }
        ByteBuffer sent = ByteBuffer.wrap(out.toByteArray());
        assertEquals(Nbd.NBDMAGIC, sent.getLong());
        assertEquals(Nbd.IHAVEOPT, sent.getLong());
        sent.getShort();
        while (sent.remaining() > 0) {
            if (transmission && sent.remaining() == 10 || transmission && sent.remaining() == 10 + 124) {
                break; // EXPORT_NAME's answer: size and flags (and zeroes)
            }
            assertTrue(sent.remaining() >= 20, "truncated option reply");
            assertEquals(Nbd.OPTION_REPLY_MAGIC, sent.getLong());
            sent.getInt();
            sent.getInt();
            int length = sent.getInt();
            assertTrue(length >= 0 && length <= sent.remaining(), "option reply length " + length);
            sent.position(sent.position() + length);
        }
    }
}
