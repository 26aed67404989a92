package io.rbdnbd.it;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static io.rbdnbd.it.RawNbdClient.CMD_READ;
import static io.rbdnbd.it.RawNbdClient.CMD_WRITE;
import static io.rbdnbd.it.RawNbdClient.CLIENT_FIXED_NEWSTYLE;
import static io.rbdnbd.it.RawNbdClient.CLIENT_NO_ZEROES;
import static io.rbdnbd.it.RawNbdClient.IHAVEOPT;
import static io.rbdnbd.it.RawNbdClient.OPT_EXPORT_NAME;
import static io.rbdnbd.it.RawNbdClient.REQUEST_MAGIC;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Attacks a running {@code rbd-nbd serve} from outside, as a hostile client would, one group of
 * probes at a time (each the reproducer of a defect once seen). After every group: the process is
 * alive, its resident memory stays under the bound its configuration sets (heap + direct memory +
 * the JVM's own), a connection opened before all groups still reads back what it wrote, and a
 * fresh client is served. Each group prints one line ("ABUSE group | result | RSS before -> after")
 * for the record. Every loop is bounded in count and time; all traffic stays on a Unix socket.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ClientAbuseTest {
    /** The launcher's defaults for serve with a file image: -Xmx512m, -XX:MaxDirectMemorySize=256m. */
    private static final long HEAP_MIB = 512;
    private static final long DIRECT_MIB = 256;
    /** Metaspace, code cache, thread stacks, GC structures, the C heap of a JVM this size. */
    private static final long JVM_OWN_MIB = 200;
    private static final long RSS_BOUND_MIB = HEAP_MIB + DIRECT_MIB + JVM_OWN_MIB;
    private static final long SIZE = 256L << 20;
    private static final int BIG = 32 << 20;
    private static final Duration SERVED_WITHIN = Duration.ofSeconds(30);

    @TempDir
    static Path dir;
    static ServerProcess server;
    static RawNbdClient bystander;
    static final byte[] BYSTANDER_DATA = pattern(65536, 1);

    @BeforeAll
    static void start() throws IOException {
        server = ServerProcess.start(Map.of("RBDNBD_JAVA_OPTS",
                        "-Drbdnbd.engine.payload-timeout=3s -Drbdnbd.engine.export.handshake-timeout=2s"),
                "file:" + dir.resolve("disk.img"), "--size", String.valueOf(SIZE),
                "--socket", dir.resolve("a.sock").toString());
        bystander = RawNbdClient.unix(server.socketPath());
        bystander.handshake(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES);
        bystander.writeData(1, 1 << 20, BYSTANDER_DATA);
        assertEquals(0, bystander.expectReply(1).error());
    }

    @AfterAll
    static void stop() {
        if (bystander != null) {
            bystander.close();
        }
        if (server != null) {
            try {
                server.stop();
            } finally {
                server.close();
            }
        }
    }

    private static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        new Random(seed).nextBytes(b);
        return b;
    }

    private static long rssMib() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc", String.valueOf(server.process().pid()), "status"))) {
                if (line.startsWith("VmRSS:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024;
                }
            }
        } catch (IOException e) {
            fail("cannot read the server's memory: " + e + "\n" + server.describe());
        }
        throw new AssertionError("no VmRSS");
    }

    /** What every group ends with. */
    private static void afterGroup(String group, String result, long rssBefore) throws IOException {
        assertTrue(server.isAlive(), group + ": the server died\n" + server.describe());
        long rss = rssMib();
        System.out.printf("ABUSE %s | %s | RSS %d -> %d MiB (bound %d)%n", group, result, rssBefore, rss, RSS_BOUND_MIB);
        assertTrue(rss < RSS_BOUND_MIB, group + ": RSS " + rss + " MiB over the bound " + RSS_BOUND_MIB);
        bystander.read(2, 1 << 20, BYSTANDER_DATA.length);
        assertArrayEquals(BYSTANDER_DATA, bystander.readReply(SERVED_WITHIN).data(),
                group + ": the connection made before the group reads back what it wrote");
        long deadline = System.nanoTime() + SERVED_WITHIN.toNanos();
        byte[] data = pattern(4096, group.hashCode());
        while (true) {
            try (RawNbdClient fresh = RawNbdClient.unix(server.socketPath())) {
                fresh.handshake(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES);
                fresh.writeData(3, 8 << 20, data);
                assertEquals(0, fresh.readReply(SERVED_WITHIN).error());
                fresh.read(4, 8 << 20, data.length);
                assertArrayEquals(data, fresh.readReply(SERVED_WITHIN).data(), group + ": a fresh client");
                return;
            } catch (AssertionError e) { // refused while the group's connections are being closed
                if (System.nanoTime() > deadline) {
                    throw new AssertionError(group + ": no fresh client served within " + SERVED_WITHIN + "\n"
                            + server.describe(), e);
                }
                sleep(500);
            }
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    /** A raw socket in transmission, for clients that must not block the test when the server stops reading. */
    private static SocketChannel transmitting() throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(server.socketPath()));
        readFully(ch, 18);
        ch.write(ByteBuffer.allocate(4).putInt(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES).flip());
        ch.write(ByteBuffer.allocate(16).putLong(IHAVEOPT).putInt(OPT_EXPORT_NAME).putInt(0).flip());
        readFully(ch, 10);
        return ch;
    }

    private static void readFully(SocketChannel ch, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new IOException("closed after " + b.position() + " of " + n + " bytes");
            }
        }
    }

    /** Writes what the socket takes within {@code within} without blocking longer; returns the bytes sent. */
    private static long sendSome(SocketChannel ch, ByteBuffer b, Duration within) throws IOException {
        ch.configureBlocking(false);
        long sent = 0;
        long deadline = System.nanoTime() + within.toNanos();
        while (b.hasRemaining() && System.nanoTime() < deadline) {
            int n = ch.write(b);
            sent += n;
            if (n == 0) {
                sleep(5);
            }
        }
        return sent;
    }

    private static void closeAll(List<SocketChannel> chs) {
        for (SocketChannel c : chs) {
            try {
                c.close();
            } catch (IOException ignored) {
                // going anyway
            }
        }
    }

    /** Defect: 14 clients announcing a 32 MiB WRITE and sending all but its last byte killed the JVM. */
    @Test
    @Order(1)
    void announcedWritesThatNeverFinish() throws IOException {
        long before = rssMib();
        List<SocketChannel> clients = new ArrayList<>();
        long sent = 0;
        try {
            for (int i = 0; i < 40; i++) {
                SocketChannel ch = transmitting();
                clients.add(ch);
                ByteBuffer req = RawNbdClient.requestBytes(REQUEST_MAGIC, 0, CMD_WRITE, i, 0, BIG, null);
                ByteBuffer payload = ByteBuffer.allocate(BIG - 1);
                sent += sendSome(ch, req, Duration.ofSeconds(1));
                sent += sendSome(ch, payload, Duration.ofMillis(150));
            }
            assertTrue(server.isAlive(), server.describe());
            sleep(5000); // the payload timeout (3 s) closes the clients whose WRITEs were admitted
            long during = rssMib();
            assertTrue(during < RSS_BOUND_MIB, "RSS " + during + " MiB with 40 stalled writes");
            int closedByServer = 0;
            for (SocketChannel ch : clients) {
                try {
                    if (ch.read(ByteBuffer.allocate(16)) < 0) {
                        closedByServer++;
                    }
                } catch (IOException reset) {
                    closedByServer++;
                }
            }
            assertTrue(closedByServer >= 2, closedByServer + " stalled clients closed by the payload timeout");
            closeAll(clients);
            afterGroup("40 clients x 32 MiB WRITE, last byte never sent", (sent >> 20) + " MiB taken in of "
                    + (40L * BIG >> 20) + " MiB announced, RSS " + during + " MiB during, " + closedByServer
                    + " closed by the payload timeout after 5 s", before);
        } finally {
            closeAll(clients);
        }
    }

    /** Defect: clients that send big READs, never read, then close, left the export's budget full forever. */
    @Test
    @Order(2)
    void readsWhoseRepliesAreNeverRead() throws IOException {
        long before = rssMib();
        List<SocketChannel> clients = new ArrayList<>();
        for (int c = 0; c < 2; c++) {
            SocketChannel ch = transmitting();
            clients.add(ch);
            for (int i = 0; i < 8; i++) {
                ByteBuffer req = RawNbdClient.requestBytes(REQUEST_MAGIC, 0, CMD_READ, i, 0, BIG, null);
                sendSome(ch, req, Duration.ofSeconds(1));
            }
        }
        sleep(2000);
        closeAll(clients);
        afterGroup("2 clients x 8 x 32 MiB READ, replies never read, then closed", "budget given back", before);
    }

    /** Defect: ~510 connections exhausted direct memory; the JVM died or new clients hung. */
    @Test
    @Order(3)
    void manyConnectionsAtOnce() throws IOException {
        long before = rssMib();
        List<SocketChannel> clients = new ArrayList<>();
        int greeted = 0;
        int refused = 0;
        try {
            for (int i = 0; i < 600; i++) {
                SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
                clients.add(ch);
                ch.connect(UnixDomainSocketAddress.of(server.socketPath()));
                try {
                    readFully(ch, 18);
                    greeted++;
                } catch (IOException e) {
                    refused++;
                }
            }
            assertTrue(server.isAlive(), server.describe());
            assertTrue(greeted > 0 && refused > 0, greeted + " greeted, " + refused + " refused");
            long during = rssMib();
            assertTrue(during < RSS_BOUND_MIB, "RSS " + during + " MiB with 600 connections");
            closeAll(clients);
            afterGroup("600 connections at once", greeted + " greeted (max-connections-per-export), " + refused
                    + " closed at once", before);
        } finally {
            closeAll(clients);
        }
    }

    /** Defect: slowloris clients held their threads as long as they liked. */
    @Test
    @Order(4)
    void clientsThatStopInTheHandshake() throws IOException {
        long before = rssMib();
        List<SocketChannel> clients = new ArrayList<>();
        try {
            for (int i = 0; i < 100; i++) {
                SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
                clients.add(ch);
                ch.connect(UnixDomainSocketAddress.of(server.socketPath()));
                ch.write(ByteBuffer.allocate(4).putInt(CLIENT_FIXED_NEWSTYLE).flip()); // then nothing
            }
            long start = System.nanoTime();
            int closed = 0;
            for (SocketChannel ch : clients) {
                ByteBuffer b = ByteBuffer.allocate(4096);
                try {
                    while (ch.read(b.clear()) >= 0) {
                        if (System.nanoTime() - start > 20_000_000_000L) {
                            fail("a client idle in the handshake was not closed within 20 s");
                        }
                    }
                } catch (IOException reset) {
                    // closed too
                }
                closed++;
            }
            afterGroup("100 clients idle in the handshake", closed + " closed by the 2 s handshake timeout after "
                    + (System.nanoTime() - start) / 1_000_000 + " ms", before);
        } finally {
            closeAll(clients);
        }
    }

    /** Defect: any export name was accepted; an oversize EXPORT_NAME got an option reply instead of a close. */
    @Test
    @Order(5)
    void exportNames() throws IOException {
        long before = rssMib();
        String sock = server.socketPath().toString();
        Commands.Result unknown = Commands.run(Commands.nbdinfo(), "--size", "nbd+unix:///nope?socket=" + sock);
        assertNotEquals(0, unknown.exitCode(), unknown.describe());
        Commands.Result known = Commands.run(Commands.nbdinfo(), "--size", "nbd+unix:///?socket=" + sock);
        assertEquals(0, known.exitCode(), known.describe());
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(server.socketPath()));
            readFully(ch, 18);
            ch.write(ByteBuffer.allocate(4).putInt(CLIENT_FIXED_NEWSTYLE).flip());
            int big = 65 * 1024;
            ch.write(ByteBuffer.allocate(16).putLong(IHAVEOPT).putInt(OPT_EXPORT_NAME).putInt(big).flip());
            sendSome(ch, ByteBuffer.allocate(big), Duration.ofSeconds(1));
            ch.configureBlocking(true);
            ByteBuffer b = ByteBuffer.allocate(64);
            int n;
            try {
                n = ch.read(b);
            } catch (IOException reset) {
                n = -1;
            }
            assertEquals(-1, n, "an oversize EXPORT_NAME is answered by a close, nothing else");
        }
        afterGroup("unknown export name, 65 KiB EXPORT_NAME", "nbdinfo refused ('nope'), oversize name closed", before);
    }

    /** Defect: one WARN line per bad connection, 7,700 lines in 10 s. */
    @Test
    @Order(6)
    void badClientsInALoopDoNotFloodTheLog() throws IOException {
        long before = rssMib();
        sleep(10_500); // past the interval (10 s) of lines from this listener in the groups before
        long linesBefore = warnLines();
        long deadline = System.nanoTime() + 8_000_000_000L;
        int n = 0;
        while (n < 3000 && System.nanoTime() < deadline) {
            try (SocketChannel ch = transmitting()) {
                ch.write(RawNbdClient.requestBytes(0xdeadbeef, 0, CMD_READ, 1, 0, 512, null));
                ByteBuffer b = ByteBuffer.allocate(64);
                while (ch.read(b.clear()) >= 0) {
                    // until the server closes
                }
            } catch (IOException e) {
                // reset: closed as well
            }
            n++;
        }
        sleep(500);
        long lines = warnLines() - linesBefore;
        assertTrue(lines >= 1 && lines <= 3, n + " bad clients from one place gave " + lines + " WARN lines\n"
                + server.describe());
        afterGroup(n + " bad-magic clients in 8 s", lines + " WARN line(s) logged", before);
    }

    private static long warnLines() {
        return server.stderr().lines().filter(l -> l.contains("WARN") && l.contains("closing the connection")).count();
    }

    /** Random bytes in the handshake and random request headers: bounded in time, nothing may break. */
    @Test
    @Order(7)
    void randomHandshakesAndHeaders() throws IOException {
        long before = rssMib();
        Random rnd = new Random(20261203);
        long deadline = System.nanoTime() + 10_000_000_000L;
        int handshakes = 0;
        int headers = 0;
        int closed = 0;
        while (System.nanoTime() < deadline && handshakes + headers < 4000) {
            boolean inHandshake = rnd.nextBoolean();
            try (SocketChannel ch = inHandshake ? SocketChannel.open(StandardProtocolFamily.UNIX) : transmitting()) {
                if (inHandshake) {
                    ch.connect(UnixDomainSocketAddress.of(server.socketPath()));
                    readFully(ch, 18);
                    byte[] junk = new byte[12 + rnd.nextInt(64)];
                    rnd.nextBytes(junk);
                    if (rnd.nextBoolean()) { // a valid start, then a random option header
                        ByteBuffer.wrap(junk).putInt(CLIENT_FIXED_NEWSTYLE).putLong(IHAVEOPT);
                    }
                    sendSome(ch, ByteBuffer.wrap(junk), Duration.ofMillis(200));
                    handshakes++;
                } else {
                    for (int i = 0; i < 8; i++) {
                        int type = rnd.nextInt(10);
                        long length = rnd.nextBoolean() ? rnd.nextInt(1 << 16) : rnd.nextInt() & 0xffffffffL;
                        ByteBuffer h = RawNbdClient.requestBytes(REQUEST_MAGIC, rnd.nextInt(1 << 16), type, i,
                                rnd.nextLong(), length, null);
                        sendSome(ch, h, Duration.ofMillis(100));
                    }
                    headers += 8;
                }
            } catch (IOException closedByServer) {
                closed++; // the server may close on bad input: that is an answer too
            }
        }
        afterGroup("random handshakes and headers for 10 s", handshakes + " handshakes, " + headers + " headers, "
                + closed + " cut short by the server", before);
    }
}
