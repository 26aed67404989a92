package io.rbdnbd.it;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static io.rbdnbd.it.RawNbdClient.CMD_BLOCK_STATUS;
import static io.rbdnbd.it.RawNbdClient.CMD_FLAG_REQ_ONE;
import static io.rbdnbd.it.RawNbdClient.CMD_READ;
import static io.rbdnbd.it.RawNbdClient.CMD_WRITE;
import static io.rbdnbd.it.RawNbdClient.EINVAL;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The option haggling and structured replies, by hand: OPT_LIST, OPT_INFO, an unsupported
 * option, OPT_STRUCTURED_REPLY, OPT_SET_META_CONTEXT base:allocation, OPT_GO; then READ chunks,
 * error chunks and BLOCK_STATUS extents checked byte by byte against the spec.
 */
class StructuredRepliesTest {
    private static final long SIZE = 64 << 20;
    private static final long MIB = 1 << 20;
    private static final long KIB = 1 << 10;
    private static final String NAME = "disk1";

    @TempDir
    static Path dir;
    static ServerProcess server;

    @BeforeAll
    static void startServer() {
        server = ServerProcess.start("memory:" + SIZE, "--name", NAME, "--socket", dir.resolve("st.sock").toString());
    }

    @AfterAll
    static void stopServer() {
        if (server != null) {
            try {
                server.stop();
            } finally {
                server.close();
            }
        }
    }

    /** What OPT_GO agreed on. */
    record Session(RawNbdClient client, long size, int flags, int contextId) {
    }

    /** Greeting, NO_ZEROES, optional structured replies and base:allocation, then OPT_GO. */
    static Session negotiate(boolean structured, boolean baseAllocation) throws IOException {
        RawNbdClient c = RawNbdClient.unix(server.socketPath());
        int handshakeFlags = c.readGreeting();
        assertEquals(2, handshakeFlags & 2, "server offers NO_ZEROES");
        c.write(ByteBuffer.allocate(4).putInt(RawNbdClient.CLIENT_FIXED_NEWSTYLE | RawNbdClient.CLIENT_NO_ZEROES).flip());
        if (structured) {
            List<RawNbdClient.OptionReply> r = c.option(RawNbdClient.OPT_STRUCTURED_REPLY, new byte[0]);
            assertEquals(List.of(RawNbdClient.REP_ACK), types(r), "OPT_STRUCTURED_REPLY is acknowledged");
        }
        int contextId = -1;
        if (baseAllocation) {
            List<RawNbdClient.OptionReply> r = c.option(RawNbdClient.OPT_SET_META_CONTEXT,
                    RawNbdClient.metaContextQuery(NAME, "base:allocation"));
            assertEquals(List.of(RawNbdClient.REP_META_CONTEXT, RawNbdClient.REP_ACK), types(r),
                    "one meta context chosen, then ACK");
            ByteBuffer b = ByteBuffer.wrap(r.get(0).data());
            contextId = b.getInt();
            byte[] name = new byte[b.remaining()];
            b.get(name);
            assertEquals("base:allocation", new String(name, StandardCharsets.UTF_8));
        }
        List<RawNbdClient.OptionReply> go = c.option(RawNbdClient.OPT_GO, RawNbdClient.nameAndInfos(NAME));
        assertEquals(RawNbdClient.REP_ACK, go.get(go.size() - 1).type(), "OPT_GO ends with ACK: " + types(go));
        long size = -1;
        int flags = -1;
        for (RawNbdClient.OptionReply r : go) {
            assertTrue(r.type() == RawNbdClient.REP_INFO || r.type() == RawNbdClient.REP_ACK,
                    "OPT_GO replies with INFO and ACK only: " + types(go));
            ByteBuffer b = ByteBuffer.wrap(r.data());
            if (r.type() == RawNbdClient.REP_INFO && (b.getShort(0) & 0xffff) == RawNbdClient.INFO_EXPORT) {
                assertEquals(12, r.data().length, "NBD_INFO_EXPORT is 12 bytes");
                size = b.getLong(2);
                flags = b.getShort(10) & 0xffff;
            }
        }
        assertEquals(SIZE, size, "NBD_INFO_EXPORT size (OPT_GO must send NBD_INFO_EXPORT)");
        return new Session(c, size, flags, contextId);
    }

    private static List<Integer> types(List<RawNbdClient.OptionReply> replies) {
        return replies.stream().map(RawNbdClient.OptionReply::type).toList();
    }

    @Test
    void optionsBeforeGo() throws IOException {
        try (RawNbdClient c = RawNbdClient.unix(server.socketPath())) {
            c.readGreeting();
            c.write(ByteBuffer.allocate(4).putInt(RawNbdClient.CLIENT_FIXED_NEWSTYLE).flip());

            List<RawNbdClient.OptionReply> list = c.option(RawNbdClient.OPT_LIST, new byte[0]);
            assertEquals(List.of(RawNbdClient.REP_SERVER, RawNbdClient.REP_ACK), types(list), "OPT_LIST");
            ByteBuffer s = ByteBuffer.wrap(list.get(0).data());
            byte[] name = new byte[s.getInt()];
            s.get(name);
            assertEquals(NAME, new String(name, StandardCharsets.UTF_8), "OPT_LIST names the export (--name)");

            List<RawNbdClient.OptionReply> unknown = c.option(99, new byte[]{1, 2, 3});
            assertEquals(List.of(RawNbdClient.REP_ERR_UNSUP), types(unknown), "an unknown option gets ERR_UNSUP");

            List<RawNbdClient.OptionReply> info = c.option(RawNbdClient.OPT_INFO, RawNbdClient.nameAndInfos(NAME));
            assertEquals(RawNbdClient.REP_ACK, info.get(info.size() - 1).type(), "OPT_INFO ends with ACK");
            assertTrue(info.stream().anyMatch(r -> r.type() == RawNbdClient.REP_INFO
                    && ByteBuffer.wrap(r.data()).getShort(0) == RawNbdClient.INFO_EXPORT
                    && ByteBuffer.wrap(r.data()).getLong(2) == SIZE), "OPT_INFO sends NBD_INFO_EXPORT with the size");

            // OPT_INFO does not end the haggling: EXPORT_NAME still enters transmission.
            c.sendOption(RawNbdClient.OPT_EXPORT_NAME, NAME.getBytes(StandardCharsets.UTF_8));
            ByteBuffer r = ByteBuffer.wrap(c.readExactly(10 + 124, RawNbdClient.TIMEOUT, "reading the EXPORT_NAME reply"));
            assertEquals(SIZE, r.getLong());
            c.read(1, 0, 512);
            assertEquals(0, c.expectReply(1).error(), "READ after OPT_INFO + OPT_EXPORT_NAME");
        }
        try (RawNbdClient c = RawNbdClient.unix(server.socketPath())) {
            c.readGreeting();
            c.write(ByteBuffer.allocate(4).putInt(RawNbdClient.CLIENT_FIXED_NEWSTYLE).flip());
            assertEquals(List.of(RawNbdClient.REP_ACK), types(c.option(RawNbdClient.OPT_ABORT, new byte[0])),
                    "OPT_ABORT is acknowledged");
            assertTrue(c.closedByServerWithin(Duration.ofSeconds(5), null), "and the server closes");
        }
        Commands.Result list = Commands.ok(Commands.nbdinfo(), "--list", server.uri());
        assertTrue(list.stdout().contains(NAME), "nbdinfo --list shows the export name\n" + list.describe());
    }

    /** Reads chunks up to the DONE one, all for {@code handle}. */
    private static List<RawNbdClient.Chunk> chunks(RawNbdClient c, long handle) throws IOException {
        List<RawNbdClient.Chunk> list = new ArrayList<>();
        while (true) {
            RawNbdClient.Chunk ch = c.readChunk();
            assertEquals(handle, ch.handle(), "chunk handle");
            list.add(ch);
            if (ch.done()) {
                return list;
            }
        }
    }

    @Test
    void readsComeAsOffsetChunksAndErrorsAsErrorChunks() throws IOException {
        Session s = negotiate(true, false);
        try (RawNbdClient c = s.client()) {
            byte[] data = new byte[(int) (64 * KIB)];
            for (int i = 0; i < data.length; i++) {
                data[i] = (byte) (i * 5 + 1);
            }
            c.request(0, CMD_WRITE, 1, MIB, data.length, data);
            RawNbdClient.Chunk w = c.readChunk();
            assertEquals(1, w.handle());
            assertEquals(0, w.error(), "WRITE succeeded");
            assertTrue(w.done(), "WRITE answered in one reply");

            long offset = MIB - 4 * KIB;
            int length = (int) (72 * KIB);
            c.request(0, CMD_READ, 2, offset, length, null);
            byte[] got = new byte[length];
            boolean[] covered = new boolean[length];
            for (RawNbdClient.Chunk ch : chunks(c, 2)) {
                assertTrue(ch.type() != -1, "READ must be answered with structured chunks once negotiated");
                ByteBuffer p = ByteBuffer.wrap(ch.payload());
                switch (ch.type()) {
                    case RawNbdClient.REPLY_TYPE_OFFSET_DATA -> {
                        long at = p.getLong() - offset;
                        int n = p.remaining();
                        assertTrue(at >= 0 && at + n <= length && n > 0, "OFFSET_DATA chunk inside the request");
                        p.get(got, (int) at, n);
                        for (int i = 0; i < n; i++) {
                            assertTrue(!covered[(int) at + i], "bytes sent twice at " + (offset + at + i));
                            covered[(int) at + i] = true;
                        }
                    }
                    case RawNbdClient.REPLY_TYPE_OFFSET_HOLE -> {
                        long at = p.getLong() - offset;
                        int n = p.getInt();
                        assertTrue(at >= 0 && at + n <= length && n > 0, "OFFSET_HOLE chunk inside the request");
                        for (int i = 0; i < n; i++) {
                            covered[(int) at + i] = true;
                        }
                    }
                    case RawNbdClient.REPLY_TYPE_NONE -> assertEquals(0, ch.payload().length);
                    default -> fail("unexpected chunk type " + ch.type() + " for a READ");
                }
            }
            for (int i = 0; i < length; i++) {
                if (!covered[i]) {
                    fail("the READ reply left byte " + (offset + i) + " out");
                }
            }
            byte[] expected = new byte[length];
            System.arraycopy(data, 0, expected, (int) (4 * KIB), data.length);
            assertArrayEquals(expected, got, "READ data across a hole and written data");

            c.request(0, CMD_READ, 3, SIZE - 512, 1024, null);
            List<RawNbdClient.Chunk> err = chunks(c, 3);
            RawNbdClient.Chunk e = err.get(err.size() - 1);
            assertEquals(RawNbdClient.REPLY_TYPE_ERROR, e.type(), "READ beyond the end: an error chunk");
            assertEquals(EINVAL, e.error(), "READ beyond the end: EINVAL");
            int messageLength = ByteBuffer.wrap(e.payload()).getShort(4) & 0xffff;
            assertEquals(e.payload().length, 6 + messageLength, "error chunk length = 6 + message length");

            c.request(0, 99, 4, 0, 0, null);
            List<RawNbdClient.Chunk> unknown = chunks(c, 4);
            assertEquals(EINVAL, unknown.get(unknown.size() - 1).error(), "unknown command: EINVAL");

            c.request(0, CMD_READ, 5, MIB, 16, null);
            List<RawNbdClient.Chunk> after = chunks(c, 5);
            assertEquals(0, after.get(after.size() - 1).error(), "READ after the errors");
        }
    }

    record Ext(long length, int flags) {
    }

    private static List<Ext> blockStatus(RawNbdClient c, Session s, long handle, int flags, long offset, int length)
            throws IOException {
        c.request(flags, CMD_BLOCK_STATUS, handle, offset, length, null);
        List<Ext> extents = new ArrayList<>();
        boolean sawContext = false;
        for (RawNbdClient.Chunk ch : chunks(c, handle)) {
            if (ch.type() == RawNbdClient.REPLY_TYPE_NONE) {
                continue;
            }
            if (ch.type() != RawNbdClient.REPLY_TYPE_BLOCK_STATUS) {
                fail("BLOCK_STATUS answered with chunk type " + ch.type() + " error " + ch.error());
            }
            ByteBuffer p = ByteBuffer.wrap(ch.payload());
            assertEquals(4, p.remaining() % 8, "block status payload = context id + 8 bytes per extent");
            assertEquals(s.contextId(), p.getInt(), "the context id SET_META_CONTEXT gave");
            assertTrue(!sawContext, "one BLOCK_STATUS chunk per context");
            sawContext = true;
            while (p.hasRemaining()) {
                extents.add(new Ext(p.getInt() & 0xffffffffL, p.getInt()));
            }
        }
        assertTrue(sawContext, "a BLOCK_STATUS chunk for base:allocation");
        return extents;
    }

    @Test
    void blockStatusDescribesHolesAndData() throws IOException {
        Session s = negotiate(true, true);
        try (RawNbdClient c = s.client()) {
            byte[] data = new byte[(int) (64 * KIB)];
            java.util.Arrays.fill(data, (byte) 0x42);
            c.request(0, CMD_WRITE, 1, 9 * MIB, data.length, data);
            assertEquals(0, c.readChunk().error());

            List<Ext> all = blockStatus(c, s, 2, 0, 8 * MIB, (int) (2 * MIB));
            assertEquals(List.of(new Ext(MIB, 3), new Ext(64 * KIB, 0), new Ext(MIB - 64 * KIB, 3)), all,
                    "hole+zero (3), data (0), hole+zero over 8M..10M");

            List<Ext> one = blockStatus(c, s, 3, CMD_FLAG_REQ_ONE, 8 * MIB, (int) (2 * MIB));
            assertEquals(List.of(new Ext(MIB, 3)), one, "REQ_ONE: only the first extent");

            // A range reaching the end of the export: extents must not go past it.
            List<Ext> tail = blockStatus(c, s, 4, 0, SIZE - 128 * KIB, (int) (128 * KIB));
            long sum = tail.stream().mapToLong(Ext::length).sum();
            assertTrue(sum > 0 && sum <= 128 * KIB, "extents within the request: " + tail);

            c.request(0, CMD_BLOCK_STATUS, 5, SIZE - 4096, 8192, null);
            List<RawNbdClient.Chunk> beyond = chunks(c, 5);
            assertEquals(EINVAL, beyond.get(beyond.size() - 1).error(), "BLOCK_STATUS beyond the end: EINVAL");
        }
        // Without SET_META_CONTEXT there is no context to report: EINVAL, and the connection lives.
        Session plain = negotiate(true, false);
        try (RawNbdClient c = plain.client()) {
            c.request(0, CMD_BLOCK_STATUS, 1, 0, 4096, null);
            List<RawNbdClient.Chunk> r = chunks(c, 1);
            assertEquals(EINVAL, r.get(r.size() - 1).error(), "BLOCK_STATUS without a negotiated context: EINVAL");
            c.request(0, CMD_READ, 2, 0, 16, null);
            List<RawNbdClient.Chunk> read = chunks(c, 2);
            assertEquals(0, read.get(read.size() - 1).error());
        }
    }
}
