package io.rbdnbd.it;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

import static io.rbdnbd.it.RawNbdClient.CMD_DISC;
import static io.rbdnbd.it.RawNbdClient.CMD_FLUSH;
import static io.rbdnbd.it.RawNbdClient.CMD_READ;
import static io.rbdnbd.it.RawNbdClient.CMD_TRIM;
import static io.rbdnbd.it.RawNbdClient.CMD_WRITE;
import static io.rbdnbd.it.RawNbdClient.CMD_WRITE_ZEROES;
import static io.rbdnbd.it.RawNbdClient.EINVAL;
import static io.rbdnbd.it.RawNbdClient.ENOSPC;
import static io.rbdnbd.it.RawNbdClient.EPERM;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A hand-written client that misbehaves on purpose: the server must close a connection that can
 * no longer be framed, answer a bad but framed request with an error and carry on, and keep
 * serving every other client throughout.
 */
class MalformedClientTest {
    private static final long SIZE = 64 << 20;
    private static final Duration CLOSE_WITHIN = Duration.ofSeconds(5);

    @TempDir
    static Path dir;
    static ServerProcess server;

    @BeforeAll
    static void startServer() {
        server = ServerProcess.start("memory:" + SIZE, "--socket", dir.resolve("raw.sock").toString(),
                "--listen", "127.0.0.1:0");
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

    private static RawNbdClient connect() {
        return RawNbdClient.unix(server.socketPath());
    }

    private static void assertServerStillServes() {
        Commands.Result r = Commands.run(Commands.nbdinfo(), "--size", server.uri());
        if (r.exitCode() != 0) {
            fail("a well-behaved client (nbdinfo) on the same server must still work\n" + r.describe() + "\n"
                    + server.describe());
        }
        assertEquals(String.valueOf(SIZE), r.stdout().trim(), "nbdinfo --size");
        assertTrue(server.isAlive(), server.describe());
    }

    private static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (seed * 31 + i * 7);
        }
        return b;
    }

    /** A valid write then read on the connection, proving it still carries requests. */
    private static void assertConnectionCarriesOn(RawNbdClient c, long handle, long offset) throws IOException {
        byte[] data = pattern(4096, (int) handle);
        c.writeData(handle, offset, data);
        assertEquals(0, c.expectReply(handle).error(), "a valid WRITE after the bad request");
        c.read(handle + 1, offset, data.length);
        RawNbdClient.Reply r = c.expectReply(handle + 1);
        assertEquals(0, r.error(), "a valid READ after the bad request");
        assertArrayEquals(data, r.data(), "READ returns what was written");
    }

    @Test
    void badRequestMagicClosesThatConnectionOnly() throws IOException {
        try (RawNbdClient bystander = connect(); RawNbdClient bad = connect()) {
            assertEquals(SIZE, bystander.handshake().size());
            RawNbdClient.Export e = bad.handshake();
            assertEquals(SIZE, e.size(), "export size from NBD_OPT_EXPORT_NAME");
            assertEquals(0, e.flags() & RawNbdClient.FLAG_READ_ONLY, "writable export");

            bad.write(RawNbdClient.requestBytes(0xdeadbeef, 0, CMD_READ, 1, 0, 512, null));
            long[] received = {0};
            assertTrue(bad.closedByServerWithin(CLOSE_WITHIN, received),
                    "a request with a bad magic must make the server close the connection within " + CLOSE_WITHIN
                            + "\n" + server.describe());
            assertEquals(0, received[0], "no reply to a request with a bad magic");

            assertServerStillServes();
            assertConnectionCarriesOn(bystander, 100, 0);
        }
    }

    @Test
    void badRequestMagicOverTcp() throws IOException {
        try (RawNbdClient bad = RawNbdClient.tcp(server.tcpPort())) {
            bad.handshake();
            bad.write(RawNbdClient.requestBytes(0x25609514, 0, CMD_WRITE, 1, 0, 0, new byte[0]));
            assertTrue(bad.closedByServerWithin(CLOSE_WITHIN, null), "bad magic over TCP closes\n" + server.describe());
        }
        Commands.Result r = Commands.run(Commands.nbdinfo(), "--size", server.tcpUri());
        assertEquals(0, r.exitCode(), r.describe() + "\n" + server.describe());
    }

    @Test
    void unknownCommandGetsEinvalAndTheConnectionCarriesOn() throws IOException {
        try (RawNbdClient c = connect()) {
            c.handshake();
            c.request(0, 99, 0x1234_5678_9abc_def0L, 0, 512, null);
            RawNbdClient.Reply r = c.expectReply(0x1234_5678_9abc_def0L);
            assertEquals(EINVAL, r.error(), "an unknown command type gets EINVAL");

            c.read(7, 0, 512);
            RawNbdClient.Reply read = c.expectReply(7);
            assertEquals(0, read.error(), "a valid READ right after the unknown command");
            assertEquals(512, read.data().length);

            // A flag no command knows, on a READ: EINVAL, and on we go.
            c.request(1 << 9, CMD_READ, 8, 0, 512, null);
            assertEquals(EINVAL, c.expectReply(8).error(), "READ with an unknown flag");
            assertConnectionCarriesOn(c, 9, 4096);
        }
        assertServerStillServes();
    }

    @Test
    void handlesAreEchoedAndPipelinedRepliesAllArrive() throws IOException {
        long[] handles = {0, 1, -1L, Long.MIN_VALUE, Long.MAX_VALUE, 0xdead_beef_0000_0001L, 42, 0x0101_0101_0101_0101L};
        try (RawNbdClient c = connect()) {
            c.handshake(RawNbdClient.CLIENT_FIXED_NEWSTYLE | RawNbdClient.CLIENT_NO_ZEROES);
            // All writes at once, then all replies (in any order).
            ByteBuffer all = ByteBuffer.allocate(handles.length * (28 + 8192));
            for (int i = 0; i < handles.length; i++) {
                all.put(RawNbdClient.requestBytes(RawNbdClient.REQUEST_MAGIC, 0, CMD_WRITE, handles[i],
                        1_000_000L + i * 8192L, 8192, pattern(8192, i)));
            }
            c.write(all.flip());
            Map<Long, Integer> errors = new HashMap<>();
            for (int i = 0; i < handles.length; i++) {
                RawNbdClient.Reply r = c.readReply();
                errors.put(r.handle(), r.error());
            }
            for (long h : handles) {
                assertEquals(0, errors.getOrDefault(h, -1), String.format("WRITE reply for handle 0x%x (got %s)", h, errors));
            }
            for (int i = 0; i < handles.length; i++) {
                c.read(handles[i], 1_000_000L + i * 8192L, 8192);
            }
            Map<Long, byte[]> data = new HashMap<>();
            for (int i = 0; i < handles.length; i++) {
                RawNbdClient.Reply r = c.readReply();
                assertEquals(0, r.error(), String.format("READ reply for handle 0x%x", r.handle()));
                data.put(r.handle(), r.data());
            }
            for (int i = 0; i < handles.length; i++) {
                assertArrayEquals(pattern(8192, i), data.get(handles[i]), String.format("data of handle 0x%x", handles[i]));
            }
            c.request(0, CMD_FLUSH, 77, 0, 0, null);
            assertEquals(0, c.expectReply(77).error(), "FLUSH");
        }
    }

    @Test
    void requestsBeyondTheEndGetErrorsAndTheConnectionCarriesOn() throws IOException {
        try (RawNbdClient c = connect()) {
            c.handshake();
            c.read(1, SIZE, 512);
            assertEquals(EINVAL, c.expectReply(1).error(), "READ starting at the end: EINVAL");
            c.read(2, SIZE - 512, 1024);
            assertEquals(EINVAL, c.expectReply(2).error(), "READ straddling the end: EINVAL");
            c.writeData(3, SIZE, pattern(4096, 3));
            assertEquals(ENOSPC, c.expectReply(3).error(), "WRITE at the end: ENOSPC (its payload skipped)");
            c.writeData(4, SIZE - 1024, pattern(4096, 4));
            assertEquals(ENOSPC, c.expectReply(4).error(), "WRITE straddling the end: ENOSPC");
            c.request(0, CMD_TRIM, 5, SIZE - 4096, 8192, null);
            assertEquals(EINVAL, c.expectReply(5).error(), "TRIM beyond the end: EINVAL");
            c.request(0, CMD_WRITE_ZEROES, 6, SIZE, 4096, null);
            assertEquals(ENOSPC, c.expectReply(6).error(), "WRITE_ZEROES beyond the end: ENOSPC");
            c.read(7, 0xffff_ffff_ffff_f000L, 8192);
            assertEquals(EINVAL, c.expectReply(7).error(), "READ whose offset + length overflows 64 bits: EINVAL");
            c.read(8, Long.MIN_VALUE, 512);
            assertEquals(EINVAL, c.expectReply(8).error(), "READ at offset 2^63: EINVAL");
            assertConnectionCarriesOn(c, 10, SIZE - 4096);
        }
    }

    @Test
    void oversizedReadGetsEinvalButOversizedWriteClosesTheConnection() throws IOException {
        String json = Commands.ok(Commands.nbdinfo(), "--json", server.uri()).stdout();
        long max = Long.parseLong(NbdInfoTest.jsonField(json, "block_size_maximum"));
        assertTrue(max > 0 && max < SIZE, "advertised maximum block size " + max);
        try (RawNbdClient c = connect()) {
            c.handshake();
            c.read(1, 0, (int) (max + 4096)); // within the export, over the maximum payload
            assertEquals(EINVAL, c.expectReply(1).error(), "READ over the maximum payload: EINVAL");
            assertConnectionCarriesOn(c, 2, 0);

            // A WRITE header announcing more payload than the server accepts: the payload cannot
            // be skipped safely, so the server closes (without sending the payload ourselves).
            c.write(RawNbdClient.requestBytes(RawNbdClient.REQUEST_MAGIC, 0, CMD_WRITE, 3, 0, max + 4096, null));
            assertTrue(c.closedByServerWithin(CLOSE_WITHIN, null),
                    "a WRITE over the maximum payload closes the connection\n" + server.describe());
        }
        assertServerStillServes();
    }

    @Test
    void discAnswersWhatIsInFlightThenCloses() throws IOException {
        try (RawNbdClient c = connect()) {
            c.handshake();
            byte[] data = pattern(65536, 5);
            ByteBuffer b = ByteBuffer.allocate(3 * 28 + data.length);
            b.put(RawNbdClient.requestBytes(RawNbdClient.REQUEST_MAGIC, 0, CMD_WRITE, 1, 2 << 20, data.length, data));
            b.put(RawNbdClient.requestBytes(RawNbdClient.REQUEST_MAGIC, 0, CMD_FLUSH, 2, 0, 0, null));
            b.put(RawNbdClient.requestBytes(RawNbdClient.REQUEST_MAGIC, 0, CMD_DISC, 3, 0, 0, null));
            c.write(b.flip());
            Map<Long, Integer> errors = new HashMap<>();
            errors.put(c.readReply().handle(), 0);
            errors.put(c.readReply().handle(), 0);
            assertEquals(Map.of(1L, 0, 2L, 0), errors, "WRITE and FLUSH answered before the DISC closes");
            long[] extra = {0};
            assertTrue(c.closedByServerWithin(CLOSE_WITHIN, extra), "the server closes after NBD_CMD_DISC");
            assertEquals(0, extra[0], "no reply to NBD_CMD_DISC");
        }
        try (RawNbdClient c = connect()) {
            c.handshake();
            c.read(1, 2 << 20, 65536);
            assertArrayEquals(pattern(65536, 5), c.expectReply(1).data(), "the write before DISC is there");
        }
    }

    @Test
    void garbageDuringTheHandshakeClosesThatConnection() throws IOException {
        try (RawNbdClient c = connect()) {
            c.readGreeting();
            c.write(ByteBuffer.allocate(4).putInt(RawNbdClient.CLIENT_FIXED_NEWSTYLE).flip());
            c.write(ByteBuffer.allocate(16).putLong(0x0102030405060708L).putInt(1).putInt(0).flip());
            assertTrue(c.closedByServerWithin(CLOSE_WITHIN, null), "a bad option magic closes the connection");
        }
        try (RawNbdClient c = connect()) {
            c.readGreeting();
            c.write(ByteBuffer.allocate(4).putInt(0x80).flip());
            assertTrue(c.closedByServerWithin(CLOSE_WITHIN, null), "unknown client flags close the connection");
        }
        try (RawNbdClient c = connect()) {
            c.readGreeting();
            c.write(new byte[]{0, 0}); // half the client flags, then hang up
        }
        try (RawNbdClient c = connect()) {
            c.handshake();
            byte[] data = pattern(65536, 9);
            // A WRITE whose payload stops half way, then the client hangs up.
            c.write(RawNbdClient.requestBytes(RawNbdClient.REQUEST_MAGIC, 0, CMD_WRITE, 1, 0, data.length,
                    Arrays.copyOf(data, 1000)));
        }
        assertServerStillServes();
    }

    @Test
    void clientsVanishingWithRequestsInFlightLeaveTheServerHealthy() throws IOException {
        for (int round = 0; round < 8; round++) {
            try (RawNbdClient c = round % 2 == 0 ? connect() : RawNbdClient.tcp(server.tcpPort())) {
                c.handshake();
                ByteBuffer b = ByteBuffer.allocate(64 * 28);
                for (int i = 0; i < 64; i++) {
                    b.put(RawNbdClient.requestBytes(RawNbdClient.REQUEST_MAGIC, 0, CMD_READ, i, (long) i << 20, 1 << 20, null));
                }
                c.write(b.flip());
            } // closed without reading a single reply
        }
        assertServerStillServes();
        try (RawNbdClient c = connect()) {
            c.handshake();
            assertConnectionCarriesOn(c, 1, 5 << 20);
        }
    }

    @Test
    void readOnlyExportAnswersEpermToWrites() throws IOException {
        try (ServerProcess ro = ServerProcess.start("memory:1M", "--read-only", "--socket",
                dir.resolve("ro.sock").toString())) {
            try (RawNbdClient c = RawNbdClient.unix(ro.socketPath())) {
                readOnlyChecks(c, ro);
            }
            ro.stop();
        }
    }

    private static void readOnlyChecks(RawNbdClient c, ServerProcess ro) throws IOException {
        RawNbdClient.Export e = c.handshake();
        assertEquals(RawNbdClient.FLAG_READ_ONLY, e.flags() & RawNbdClient.FLAG_READ_ONLY, "NBD_FLAG_READ_ONLY");
        c.writeData(1, 0, pattern(4096, 1));
        assertEquals(EPERM, c.expectReply(1).error(), "WRITE to a read-only export: EPERM\n" + ro.describe());
        c.request(0, CMD_TRIM, 2, 0, 4096, null);
        assertEquals(EPERM, c.expectReply(2).error(), "TRIM on a read-only export: EPERM");
        c.request(0, CMD_WRITE_ZEROES, 3, 0, 4096, null);
        assertEquals(EPERM, c.expectReply(3).error(), "WRITE_ZEROES on a read-only export: EPERM");
        c.read(4, 0, 4096);
        RawNbdClient.Reply r = c.expectReply(4);
        assertEquals(0, r.error(), "READ on a read-only export works");
        assertArrayEquals(new byte[4096], r.data(), "nothing was written");
    }
}
