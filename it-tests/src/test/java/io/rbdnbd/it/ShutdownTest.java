package io.rbdnbd.it;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.InetSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** SIGTERM/SIGINT: the server drains, exits 0, and every acknowledged write is in the image. */
class ShutdownTest {
    private static final long MIB = 1 << 20;
    /** Far below the 30 s drain timeout: nothing should make a drain wait for it. */
    private static final Duration PROMPT = Duration.ofSeconds(15);

    @TempDir
    Path dir;

    private static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (seed * 13 + i * 3 + (i >> 9));
        }
        return b;
    }

    private static byte[] readFile(Path file, long offset, int length) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "r")) {
            byte[] b = new byte[length];
            f.seek(offset);
            f.readFully(b);
            return b;
        }
    }

    private static void assertExitsZeroPromptly(ServerProcess s) {
        long start = System.nanoTime();
        s.sendTerm();
        int code = s.awaitExit(ServerProcess.STOP_TIMEOUT);
        Duration took = Duration.ofNanos(System.nanoTime() - start);
        assertEquals(0, code, "exit code after SIGTERM\n" + s.describe());
        assertTrue(took.compareTo(PROMPT) < 0, "drain took " + took + " (more than " + PROMPT + ")\n" + s.describe());
    }

    @Test
    void sigtermWhileFioWritesDrainsAndExits0() throws Exception {
        Path img = dir.resolve("busy.img");
        Path sock = dir.resolve("busy.sock");
        try (ServerProcess s = ServerProcess.start("file:" + img, "--size", "256M", "--socket", sock.toString(),
                "--listen", "127.0.0.1:0")) {
            Path fioOut = dir.resolve("fio.out");
            Process fio = new ProcessBuilder(Commands.fio(), "--name=busy", "--ioengine=nbd", "--uri=" + s.unixUri(),
                    "--rw=randwrite", "--bs=64k", "--iodepth=64", "--size=256M", "--time_based", "--runtime=60",
                    "--verify_state_save=0")
                    .directory(dir.toFile())
                    .redirectErrorStream(true)
                    .redirectOutput(fioOut.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                    .start();
            try {
                // Wait until fio's writes are landing in the file.
                long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
                while (Commands.allocatedBytes(img) < 16 * MIB) {
                    if (!fio.isAlive()) {
                        fail("fio ended before the signal\n" + Files.readString(fioOut) + "\n" + s.describe());
                    }
                    if (System.nanoTime() > deadline) {
                        fail("fio wrote less than 16 MiB in 30 s\n" + Files.readString(fioOut) + "\n" + s.describe());
                    }
                    Thread.sleep(100);
                }
                assertExitsZeroPromptly(s);
                assertTrue(fio.waitFor(30, TimeUnit.SECONDS), "fio ends once the server has closed its connection");
            } finally {
                fio.destroyForcibly();
            }
            assertFalse(Files.exists(sock), "the socket file is removed on exit");
            assertTrue(s.stderr().contains("draining 1 connection"), "the drain is logged\n" + s.describe());
            assertThrows(IOException.class, () -> {
                try (SocketChannel ch = SocketChannel.open(new InetSocketAddress("127.0.0.1", s.tcpPort()))) {
                    ch.finishConnect();
                }
            }, "the TCP listener is closed after exit");
        }
    }

    @Test
    void acknowledgedQemuIoWritesAreInTheFileAfterSigterm() throws IOException {
        Path img = dir.resolve("acked.img");
        try (ServerProcess s = ServerProcess.start("file:" + img, "--size", "32M", "--socket",
                dir.resolve("acked.sock").toString())) {
            Commands.qemuIoOk(s, s.uri(), "write -P 0xa5 4M 1M", "write -P 0x5a 31M 1M");
            s.stop();
        }
        byte[] a5 = new byte[(int) MIB];
        java.util.Arrays.fill(a5, (byte) 0xa5);
        byte[] x5a = new byte[(int) MIB];
        java.util.Arrays.fill(x5a, (byte) 0x5a);
        assertArrayEquals(a5, readFile(img, 4 * MIB, (int) MIB), "pattern 0xa5 at 4M in the backing file");
        assertArrayEquals(x5a, readFile(img, 31 * MIB, (int) MIB), "pattern 0x5a at 31M in the backing file");
        assertArrayEquals(new byte[(int) MIB], readFile(img, 0, (int) MIB), "unwritten start reads zeroes");
        assertEquals(32 * MIB, Files.size(img));
    }

    /**
     * Writes pipelined on a connection that stays open while SIGTERM arrives: each write is either
     * acknowledged (and then in the file) or never answered; replies are well formed; exit 0.
     */
    @Test
    void everyWriteAcknowledgedDuringTheDrainIsInTheFile() throws Exception {
        Path img = dir.resolve("drain.img");
        int writes = 48;
        int length = (int) MIB;
        Map<Long, Integer> acked = new HashMap<>();
        try (ServerProcess s = ServerProcess.start("file:" + img, "--size", "64M", "--socket",
                dir.resolve("drain.sock").toString()); RawNbdClient c = RawNbdClient.unix(s.socketPath())) {
            c.handshake();
            // The first write is acknowledged before the signal.
            c.writeData(1000, 0, pattern(length, 1000));
            assertEquals(0, c.expectReply(1000).error());
            acked.put(1000L, 0);
            Thread writer = new Thread(() -> {
                try {
                    for (int i = 1; i < writes; i++) {
                        c.writeData(1000 + i, (long) i * length, pattern(length, 1000 + i));
                    }
                } catch (IOException | AssertionError e) {
                    // the server stopped reading: expected once the drain starts
                }
            }, "pipelined-writer");
            writer.setDaemon(true);
            writer.start();
            Thread.sleep(50);
            s.sendTerm();
            while (true) {
                RawNbdClient.Reply r;
                try {
                    r = c.readReplyOrEof(Duration.ofSeconds(30));
                } catch (java.net.SocketException reset) {
                    // The drain stops reading the writes still pipelined behind the acknowledged ones
                    // (they are never acknowledged); closing a Unix socket with bytes unread makes the
                    // kernel report a reset to the client once it has read every reply queued before it.
                    assertTrue(String.valueOf(reset.getMessage()).contains("reset"), reset.toString());
                    break;
                }
                if (r == null) {
                    break; // EOF between replies: the drain is over
                }
                assertEquals(0, r.error(), "write " + r.handle() + " failed during the drain\n" + s.describe());
                assertTrue(r.handle() >= 1000 && r.handle() < 1000 + writes, "unknown handle " + r.handle());
                assertEquals(null, acked.put(r.handle(), r.error()), "two replies for handle " + r.handle());
            }
            int code = s.awaitExit(ServerProcess.STOP_TIMEOUT);
            assertEquals(0, code, s.describe());
            writer.join(10_000);
        }
        for (long h : acked.keySet()) {
            int i = (int) (h - 1000);
            assertArrayEquals(pattern(length, (int) h), readFile(img, (long) i * length, length),
                    "acknowledged write " + h + " (of " + acked.size() + " acknowledged) is in the file");
        }
    }

    @Test
    void idleConnectionsDoNotDelayTheShutdown() throws IOException {
        try (ServerProcess s = ServerProcess.start("memory:1M", "--socket", dir.resolve("idle.sock").toString(),
                "--listen", "127.0.0.1:0");
             RawNbdClient handshaking = RawNbdClient.unix(s.socketPath());
             RawNbdClient transmitting = RawNbdClient.tcp(s.tcpPort())) {
            handshaking.readGreeting(); // and then says nothing
            transmitting.handshake();
            transmitting.read(1, 0, 512);
            assertEquals(0, transmitting.expectReply(1).error());
            assertExitsZeroPromptly(s);
            assertTrue(handshaking.closedByServerWithin(Duration.ofSeconds(5), null), "handshaking client closed");
            assertTrue(transmitting.closedByServerWithin(Duration.ofSeconds(5), null), "idle client closed");
        }
    }

    @Test
    void sigintAlsoDrainsAndExits0() {
        Path img = dir.resolve("int.img");
        try (ServerProcess s = ServerProcess.start("file:" + img, "--size", "8M", "--socket",
                dir.resolve("int.sock").toString())) {
            Commands.qemuIoOk(s, s.uri(), "write -P 0x66 0 64k");
            Commands.ok("kill", "-INT", String.valueOf(s.process().pid()));
            assertEquals(0, s.awaitExit(ServerProcess.STOP_TIMEOUT), "exit code after SIGINT\n" + s.describe());
        }
        try {
            byte[] b = new byte[65536];
            java.util.Arrays.fill(b, (byte) 0x66);
            assertArrayEquals(b, readFile(img, 0, 65536));
        } catch (IOException e) {
            fail(e);
        }
    }

    /**
     * A client that never reads its replies cannot hold the shutdown hostage: after the drain
     * timeout (2 s here) the server cuts it and still exits 0.
     */
    @Test
    void aClientThatStopsReadingIsCutAfterTheDrainTimeout() throws IOException {
        try (ServerProcess s = ServerProcess.start(Map.of("RBDNBD_JAVA_OPTS", "-Drbdnbd.engine.drain-timeout=2s"),
                "memory:256M", "--socket", dir.resolve("stuck.sock").toString());
             RawNbdClient c = RawNbdClient.unix(s.socketPath())) {
            c.handshake();
            java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(128 * 28);
            for (int i = 0; i < 128; i++) {
                b.put(RawNbdClient.requestBytes(RawNbdClient.REQUEST_MAGIC, 0, RawNbdClient.CMD_READ, i,
                        (long) i << 20, 1 << 20, null));
            }
            c.write(b.flip()); // 128 MiB of replies the client will not read
            try {
                Thread.sleep(1000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            long start = System.nanoTime();
            s.sendTerm();
            int code = s.awaitExit(Duration.ofSeconds(25));
            Duration took = Duration.ofNanos(System.nanoTime() - start);
            assertEquals(0, code, "exit code after a drain that timed out\n" + s.describe());
            assertTrue(took.compareTo(Duration.ofSeconds(15)) < 0, "exited " + took + " after SIGTERM with a 2 s drain"
                    + " timeout\n" + s.describe());
        }
    }
}
