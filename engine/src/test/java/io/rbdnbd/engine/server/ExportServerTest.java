package io.rbdnbd.engine.server;

import io.rbdnbd.engine.Await;
import com.typesafe.config.ConfigFactory;
import io.rbdnbd.engine.backend.MemoryBackend;
import io.rbdnbd.engine.backend.ScriptedBackend;
import io.rbdnbd.engine.protocol.Frames;
import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.engine.stream.IoStats;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The export server over real Unix sockets, with a client written from the spec. */
class ExportServerTest {
    private static ActorSystem system;
    private static EngineSettings settings;
    @TempDir
    Path dir;
    private ExportServer server;

    @BeforeAll
    static void start() {
        system = ActorSystem.create("server-test");
        settings = EngineSettings.from(ConfigFactory.load());
    }

    @AfterAll
    static void stop() {
        system.terminate();
    }

    @AfterEach
    void close() {
        if (server != null) {
            server.close();
        }
    }

    /** Connects and enters transmission with NBD_OPT_EXPORT_NAME (simple replies). */
    private static SocketChannel connect(Path socket) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(socket));
        ByteBuffer greeting = readExactly(ch, 18);
        assertEquals(Nbd.NBDMAGIC, greeting.getLong());
        writeAll(ch, ByteBuffer.allocate(4).putInt(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE | Nbd.CLIENT_FLAG_NO_ZEROES).flip());
        writeAll(ch, ByteBuffer.allocate(16).putLong(Nbd.IHAVEOPT).putInt(Nbd.OPT_EXPORT_NAME).putInt(0).flip());
        readExactly(ch, 10); // size and flags
        return ch;
    }

    private static ByteBuffer readExactly(SocketChannel ch, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new IOException("server closed after " + b.position() + " of " + n + " bytes");
            }
        }
        return b.flip();
    }

    private static void writeAll(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    private static void send(SocketChannel ch, ByteString frame) throws IOException {
        writeAll(ch, frame.asByteBuffer());
    }

    /** Reads one simple reply: handle, error, data (when a read of {@code readLength} succeeded). */
    private static Frames.Reply reply(SocketChannel ch, int readLength) throws IOException {
        ByteBuffer h = readExactly(ch, 16);
        assertEquals(Nbd.SIMPLE_REPLY_MAGIC, h.getInt());
        int error = h.getInt();
        long handle = h.getLong();
        byte[] data = new byte[0];
        if (error == 0 && readLength > 0) {
            data = new byte[readLength];
            readExactly(ch, readLength).get(data);
        }
        return new Frames.Reply(false, -1, 0, handle, error, -1, data, List.of());
    }

    @Test
    void writeAndReadBackOverAUnixSocket() throws Exception {
        server = new ExportServer(system, settings, new Export("", new MemoryBackend(1 << 20), false));
        Path sock = dir.resolve("s");
        assertEquals("nbd+unix:///?socket=" + sock, server.bindUnix(sock));
        try (SocketChannel ch = connect(sock)) {
            byte[] data = new byte[70_000];
            for (int i = 0; i < data.length; i++) {
                data[i] = (byte) i;
            }
            send(ch, Frames.write(1, 1000, data));
            assertEquals(0, reply(ch, 0).error());
            send(ch, Frames.read(2, 1000, data.length));
            Frames.Reply r = reply(ch, data.length);
            assertEquals(2, r.handle());
            assertArrayEquals(data, r.data());
        }
        IoStats.Snapshot stats = server.stats().snapshot();
        assertEquals(1, stats.requests().get("write"));
        assertEquals(70_000, stats.bytes().get("read"));
    }

    @Test
    void badMagicClosesOnlyThatConnection() throws Exception {
        server = new ExportServer(system, settings, new Export("", new MemoryBackend(1 << 20), false));
        Path sock = dir.resolve("s");
        server.bindUnix(sock);
        try (SocketChannel good = connect(sock); SocketChannel bad = connect(sock)) {
            writeAll(bad, ByteBuffer.allocate(28).putInt(0, 0xdeadbeef)); // a whole header, wrong magic
            ByteBuffer one = ByteBuffer.allocate(1);
            assertEquals(-1, readWithin(bad, one, Duration.ofSeconds(5)), "server closes the broken connection");
            send(good, Frames.read(7, 0, 512));
            assertEquals(7, reply(good, 512).handle());
            send(good, Frames.request(99, 0, 8, 0, 0, null));
            assertEquals(Nbd.EINVAL, reply(good, 0).error(), "unknown command: EINVAL, connection carries on");
            send(good, Frames.read(9, 0, 512));
            assertEquals(0, reply(good, 512).error());
        }
    }

    private static int readWithin(SocketChannel ch, ByteBuffer b, Duration limit) throws Exception {
        return CompletableFuture.supplyAsync(() -> {
            try {
                return ch.read(b);
            } catch (IOException e) {
                return -2;
            }
        }).get(limit.toMillis(), TimeUnit.MILLISECONDS);
    }

    @Test
    void drainAnswersRequestsInFlightThenCloses() throws Exception {
        ScriptedBackend backend = new ScriptedBackend(new MemoryBackend(1 << 20));
        server = new ExportServer(system, settings, new Export("", backend, false));
        Path sock = dir.resolve("s");
        server.bindUnix(sock);
        try (SocketChannel ch = connect(sock)) {
            backend.setFault(backend.holding());
            for (int i = 0; i < 5; i++) {
                send(ch, Frames.write(i, i * 4096L, new byte[4096]));
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (backend.calls.get() < 5 && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertEquals(5, backend.calls.get());
            CompletableFuture<?> drained = server.drain(Duration.ofSeconds(10));
            Thread.sleep(200);
            assertFalse(drained.isDone(), "drain waits for the requests in flight");
            backend.releaseAll();
            for (int i = 0; i < 5; i++) {
                assertEquals(0, reply(ch, 0).error());
            }
            drained.get(5, TimeUnit.SECONDS);
            assertEquals(-1, readWithin(ch, ByteBuffer.allocate(1), Duration.ofSeconds(5)));
            assertEquals(0, server.connectionCount());
            assertFalse(sock.toFile().exists(), "socket file removed");
        }
    }

    @Test
    void secondServerOnALiveSocketIsRefusedAndAStaleSocketIsReplaced() throws Exception {
        server = new ExportServer(system, settings, new Export("", new MemoryBackend(1 << 20), false));
        Path sock = dir.resolve("s");
        server.bindUnix(sock);
        try (ExportServer other = new ExportServer(system, settings, new Export("", new MemoryBackend(1 << 20), false))) {
            IOException e = org.junit.jupiter.api.Assertions.assertThrows(IOException.class, () -> other.bindUnix(sock));
            assertTrue(e.getMessage().contains("in use"), e.getMessage());
        }
        // a stale socket file (no server behind it) is taken over
        Path stale = dir.resolve("stale");
        try (var l = java.nio.channels.ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            l.bind(UnixDomainSocketAddress.of(stale));
        }
        assertTrue(stale.toFile().exists());
        assertEquals("nbd+unix:///?socket=" + stale, server.bindUnix(stale));
    }

    @Test
    void aPathThatIsNotASocketIsNeverReplaced() throws Exception {
        server = new ExportServer(system, settings, new Export("", new MemoryBackend(1 << 20), false));
        Path precious = dir.resolve("precious");
        java.nio.file.Files.writeString(precious, "data");
        IOException e = org.junit.jupiter.api.Assertions.assertThrows(IOException.class, () -> server.bindUnix(precious));
        assertTrue(e.getMessage().contains("not a socket"), e.getMessage());
        assertEquals("data", java.nio.file.Files.readString(precious));
    }

    @Test
    void unixUrisArePercentEncoded() {
        assertEquals("nbd+unix:///?socket=/tmp/a%20dir%20%26%20100%25/s%231.sock",
                ExportServer.unixUri(Path.of("/tmp/a dir & 100%/s#1.sock")));
        assertEquals("nbd+unix:///?socket=/run/rbd-nbd/x_y-z.~sock", ExportServer.unixUri(Path.of("/run/rbd-nbd/x_y-z.~sock")));
    }

    @Test
    void largeRepliesGoOutInBoundedWrites() throws Exception {
        server = new ExportServer(system, settings, new Export("", new MemoryBackend(64L << 20), false));
        Path sock = dir.resolve("s");
        server.bindUnix(sock);
        try (SocketChannel ch = connect(sock)) {
            for (int i = 0; i < 12; i++) { // 12 x 32 MiB: more than the 256 MiB direct memory limit if unsliced
                send(ch, Frames.read(i, 0, 32 << 20));
                Frames.Reply r = reply(ch, 32 << 20);
                assertEquals(0, r.error());
            }
        }
    }
    /** A server in an actor system of its own, with these rbdnbd.engine.export limits. */
    private ExportServer limited(ActorSystem sys, Path sock) throws IOException {
        ExportServer srv = new ExportServer(sys, EngineSettings.from(sys.settings().config()),
                new Export("", new MemoryBackend(1 << 20), false));
        srv.bindUnix(sock);
        return srv;
    }

    private static ActorSystem systemWith(String exportLimits) {
        return ActorSystem.create("limits", ConfigFactory.parseString("rbdnbd.engine.export {" + exportLimits + "}")
                .withFallback(ConfigFactory.load()));
    }

    /** Reads until EOF, failing if it takes longer than {@code within}. */
    private static void expectClosedWithin(SocketChannel ch, Duration within) throws Exception {
        CompletableFuture<Integer> eof = CompletableFuture.supplyAsync(() -> {
            ByteBuffer b = ByteBuffer.allocate(4096);
            try {
                while (ch.read(b.clear()) >= 0) {
                    // what the server still sends before closing
                }
                return -1;
            } catch (IOException e) {
                return -2; // reset: closed as well
            }
        });
        assertTrue(eof.get(within.toMillis(), TimeUnit.MILLISECONDS) < 0);
    }

    @Test
    void aClientThatDoesNotFinishItsHandshakeIsClosedAfterTheTimeout() throws Exception {
        ActorSystem sys = systemWith("handshake-timeout = 300 ms");
        try (ExportServer srv = limited(sys, dir.resolve("s"));
             SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(dir.resolve("s")));
            readExactly(ch, 18);
            long start = System.nanoTime();
            expectClosedWithin(ch, Duration.ofSeconds(5));
            assertTrue(System.nanoTime() - start >= 250_000_000L);
            Await.until(() -> srv.connectionCount() == 0);
            try (SocketChannel ok = connect(dir.resolve("s"))) { // a client that goes on in time is served
                send(ok, Frames.read(1, 0, 512));
                assertEquals(0, reply(ok, 512).error());
            }
        } finally {
            sys.terminate();
        }
    }

    @Test
    void connectionsOverTheLimitAreClosedAndTheOthersCarryOn() throws Exception {
        ActorSystem sys = systemWith("max-connections-per-export = 2");
        try (ExportServer srv = limited(sys, dir.resolve("s"));
             SocketChannel a = connect(dir.resolve("s"));
             SocketChannel b = connect(dir.resolve("s"));
             SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            c.connect(UnixDomainSocketAddress.of(dir.resolve("s")));
            expectClosedWithin(c, Duration.ofSeconds(5));
            send(a, Frames.read(1, 0, 512));
            send(b, Frames.read(2, 0, 512));
            assertEquals(1, reply(a, 512).handle());
            assertEquals(2, reply(b, 512).handle());
            a.close();
            Await.until(() -> srv.connectionCount() == 1);
            try (SocketChannel d = connect(dir.resolve("s"))) { // a slot is free again
                send(d, Frames.read(3, 0, 512));
                assertEquals(3, reply(d, 512).handle());
            }
        } finally {
            sys.terminate();
        }
    }

    @Test
    void theProcessWideLimitCountsEveryExport() throws Exception {
        ActorSystem sys = systemWith("max-connections = 1");
        try (ExportServer one = limited(sys, dir.resolve("one"));
             ExportServer two = limited(sys, dir.resolve("two"));
             SocketChannel a = connect(dir.resolve("one"));
             SocketChannel b = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            b.connect(UnixDomainSocketAddress.of(dir.resolve("two")));
            expectClosedWithin(b, Duration.ofSeconds(5));
            assertEquals(1, ConnectionSlots.of(sys).taken());
            a.close();
            Await.until(() -> ConnectionSlots.of(sys).taken() == 0);
        } finally {
            sys.terminate();
        }
    }

    @Test
    void anIdleConnectionIsClosedWhenAnIdleTimeoutIsSet() throws Exception {
        ActorSystem sys = systemWith("idle-timeout = 300 ms");
        try (ExportServer srv = limited(sys, dir.resolve("s"));
             SocketChannel ch = connect(dir.resolve("s"))) {
            send(ch, Frames.read(1, 0, 512));
            assertEquals(0, reply(ch, 512).error());
            expectClosedWithin(ch, Duration.ofSeconds(5));
        } finally {
            sys.terminate();
        }
    }
}
