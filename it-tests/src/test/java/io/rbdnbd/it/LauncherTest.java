package io.rbdnbd.it;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code bin/rbd-nbd} as an operator meets it: exit codes and one clear line for every mistake. */
class LauncherTest {
    private static final Duration QUICK = Duration.ofSeconds(60);

    @TempDir
    Path dir;

    static Commands.Result launch(String... args) {
        return Commands.run(QUICK, null, ServerProcess.launcherCommand(args).toArray(String[]::new));
    }

    /**
     * The message lines on stderr: exactly one "rbd-nbd: ..." line saying what is wrong
     * (the usage hint line may follow), no stack trace, nothing on stdout.
     */
    static String assertOneClearLine(Commands.Result r, int exitCode, String mustMention) {
        assertEquals(exitCode, r.exitCode(), "exit code\n" + r.describe());
        assertEquals("", r.stdout(), "nothing on stdout\n" + r.describe());
        List<String> lines = new ArrayList<>();
        for (String l : r.stderr().split("\n")) {
            if (!l.isBlank()) {
                lines.add(l);
            }
        }
        assertFalse(r.stderr().contains("Exception") || r.stderr().contains("\tat "), "no stack trace\n" + r.describe());
        List<String> messages = lines.stream().filter(l -> !l.equals("run 'rbd-nbd --help' for usage")).toList();
        assertEquals(1, messages.size(), "one message line on stderr\n" + r.describe());
        String line = messages.get(0);
        assertTrue(line.startsWith("rbd-nbd: "), "the line names the program: '" + line + "'");
        assertTrue(line.contains(mustMention), "the line mentions '" + mustMention + "': '" + line + "'");
        return line;
    }

    /** Settings whose connections' direct memory cannot fit the JVM are refused at start, naming both. */
    @Test
    void directMemoryTooSmallForTheConnectionLimitIsRefusedAtStart() {
        Commands.Result r = Commands.run(QUICK, null, java.util.Map.of("RBDNBD_JAVA_OPTS", "-XX:MaxDirectMemorySize=32m"),
                ServerProcess.launcherCommand("serve", "memory:1M", "--socket", dir.resolve("s").toString())
                        .toArray(String[]::new));
        String line = assertOneClearLine(r, 1, "export.max-connections 256");
        assertTrue(line.contains("144 MiB of direct memory") && line.contains("32 MiB direct")
                && line.contains("-XX:MaxDirectMemorySize=145m"), line);
    }

    /**
     * With no daemon running nothing is mapped: unmap and detach say so as Ceph's rbd-nbd does
     * ("rbd-nbd: SPEC is not mapped", exit 1), the line ceph-csi matches to treat the volume as
     * already unmapped after a node restart.
     */
    @Test
    void unmapWithNoDaemonSaysTheSpecIsNotMapped() {
        java.util.Map<String, String> env = java.util.Map.of("RBDNBD_JAVA_OPTS",
                "-Drbdnbd.daemon.run-directory=" + dir.resolve("nodaemon"));
        String[][] cases = {{"unmap rbd/ns/img", "rbd/ns/img"}, {"unmap img", "rbd/img"},
                {"unmap pool/img@snap", "pool/img@snap"}, {"detach rbd/img", "rbd/img"},
                {"unmap rbd/img --snap-id 4", "rbd/img@{id 4}"}, {"detach --snap-id=4 rbd/img", "rbd/img@{id 4}"}};
        for (String[] c : cases) {
            Commands.Result r = Commands.run(QUICK, null, env,
                    ServerProcess.launcherCommand(c[0].split(" ")).toArray(String[]::new));
            assertEquals(1, r.exitCode(), r.describe());
            assertEquals("rbd-nbd: " + c[1] + " is not mapped\n", r.stderr(), r.describe());
        }
    }

    /**
     * The launcher sizes the heap from a memory image's size in every suffix: 409600K (400 MiB)
     * holds a 300 MiB write (it once got a 257 MiB heap and died of OutOfMemoryError).
     */
    @Test
    void aMemoryImageInKibHoldsWhatIsWrittenToIt() throws Exception {
        Path data = dir.resolve("300m.bin");
        byte[] chunk = new byte[1 << 20];
        new java.util.Random(7).nextBytes(chunk);
        try (java.io.OutputStream o = Files.newOutputStream(data)) {
            for (int i = 0; i < 300; i++) {
                o.write(chunk);
            }
        }
        try (ServerProcess s = ServerProcess.start("memory:409600K", "--socket", dir.resolve("k.sock").toString())) {
            Commands.ok(Commands.nbdcopy(), data.toString(), s.uri());
            assertTrue(s.isAlive(), s.describe());
            Path back = dir.resolve("back.bin");
            Commands.ok(Commands.nbdcopy(), s.uri(), back.toString());
            assertEquals(300L << 20, Files.mismatch(data, back),
                    "the 300 MiB read back first differ where they end (the rest of the 400 MiB image is zeroes)");
        }
    }

    /** A memory image larger than the machine is refused at start with one clear line. */
    @Test
    void aMemoryImageLargerThanTheMachineIsRefusedAtStart() {
        Commands.Result r = launch("serve", "memory:64T", "--socket", dir.resolve("big.sock").toString());
        String line = assertOneClearLine(r, 1, "larger than this machine's RAM");
        assertTrue(line.contains("memory image of 67108864 MiB"), line);
    }

    /**
     * This machine has no nbd driver: map says so before it starts a daemon or opens the image
     * (an RBD image of a dead cluster would otherwise hide it behind a 30 s connect timeout).
     */
    @Test
    void mapWithoutTheNbdDriverSaysSoFirst() {
        org.junit.jupiter.api.Assumptions.assumeFalse(Files.exists(Path.of("/sys/block/nbd0")),
                "this machine has an nbd driver");
        Path run = dir.resolve("nodriver");
        Commands.Result r = Commands.run(QUICK, null, java.util.Map.of("RBDNBD_JAVA_OPTS",
                        "-Drbdnbd.daemon.run-directory=" + run + " -Drbdnbd.ceph.connect-timeout=30s"),
                ServerProcess.launcherCommand("map", "rbd/img", "-m", "127.0.0.1:1").toArray(String[]::new));
        assertEquals(1, r.exitCode(), r.describe());
        List<String> lines = r.stderr().lines().toList();
        assertEquals("rbd-nbd: no nbd driver: /sys/block/nbd0 is missing and modprobe nbd did not load it",
                lines.get(lines.size() - 1), r.describe());
        assertFalse(Files.exists(run.resolve("control.sock")), "no daemon was started");
    }

    /** As Ceph's: list-mapped by a user who may not ask the (root) daemon lists what it can, none, and exits 0. */
    @Test
    void listMappedByAnotherUserListsNoneAndExits0() throws Exception {
        org.junit.jupiter.api.Assumptions.assumeTrue("root".equals(System.getProperty("user.name")), "needs root");
        Path run = dir.resolve("run");
        ProcessBuilder pb = new ProcessBuilder(ServerProcess.launcherCommand("daemon"))
                .redirectOutput(ProcessBuilder.Redirect.DISCARD).redirectError(dir.resolve("daemon.log").toFile());
        pb.environment().put("RBDNBD_JAVA_OPTS", "-Drbdnbd.daemon.run-directory=" + run);
        Process daemon = pb.start();
        try {
            for (int i = 0; i < 600 && !Files.exists(run.resolve("control.sock")); i++) {
                Thread.sleep(100);
            }
            assertTrue(Files.exists(run.resolve("control.sock")), Files.readString(dir.resolve("daemon.log")));
            Commands.Result r = Commands.run(QUICK, null, java.util.Map.of(), "su", "nobody", "-s", "/bin/sh", "-c",
                    "RBDNBD_JAVA_OPTS=-Drbdnbd.daemon.run-directory=" + run + " " + ServerProcess.launcher()
                            + " list-mapped --format json");
            assertEquals(0, r.exitCode(), r.describe());
            assertEquals("[]", r.stdout().trim(), r.describe());
            assertTrue(r.stderr().contains("needs root"), r.describe());
        } finally {
            daemon.destroy();
            daemon.waitFor();
        }
    }

    /** A foreground daemon whose heap cannot hold what its devices may have in flight is refused at start. */
    @Test
    void aDaemonHeapTooSmallForItsDevicesIsRefusedAtStart() {
        Commands.Result r = Commands.run(QUICK, null, java.util.Map.of("RBDNBD_JAVA_OPTS", "-Xmx128m "
                        + "-Drbdnbd.daemon.run-directory=" + dir.resolve("run")),
                ServerProcess.launcherCommand("daemon").toArray(String[]::new));
        String line = assertOneClearLine(r, 1, "rbdnbd.kernel.max-devices 64");
        assertTrue(line.contains("RBDNBD_JAVA_OPTS=\"-Xmx401m"), line);
    }

    @Test
    void noArgumentsPrintsUsageToStderrAndExits1AsCephsDoes() {
        Commands.Result r = launch();
        assertEquals(1, r.exitCode(), r.describe());
        assertTrue(r.stderr().contains("usage: rbd-nbd"), r.describe());
        assertEquals("", r.stdout(), r.describe());
    }

    @Test
    void helpPrintsUsageToStdoutAndExits0() {
        Commands.Result r = launch("--help");
        assertEquals(0, r.exitCode(), r.describe());
        assertTrue(r.stdout().contains("usage: rbd-nbd") && r.stdout().contains("serve IMAGE"), r.describe());
    }

    static Stream<Arguments> usageErrors() {
        return Stream.of(
                Arguments.of(List.of("frobnicate"), "frobnicate"),
                Arguments.of(List.of("serve"), "no image"),
                Arguments.of(List.of("serve", "memory:1M"), "--socket"),
                Arguments.of(List.of("serve", "rbd/ns/img/extra", "--listen", "127.0.0.1:0"), "rbd/ns/img/extra"),
                Arguments.of(List.of("serve", "memory:lots", "--listen", "127.0.0.1:0"), "lots"),
                Arguments.of(List.of("serve", "file:", "--listen", "127.0.0.1:0"), "file:"),
                Arguments.of(List.of("serve", "memory:1M", "--bogus", "--listen", "127.0.0.1:0"), "--bogus"),
                Arguments.of(List.of("serve", "memory:1M", "--listen", "127.0.0.1:99999"), "99999"),
                Arguments.of(List.of("serve", "memory:1M", "--listen", "localhost"), "localhost"),
                Arguments.of(List.of("serve", "memory:1M", "--listen", "127.0.0.1:"), "HOST:PORT"),
                Arguments.of(List.of("serve", "memory:1M", "--socket"), "--socket"),
                Arguments.of(List.of("serve", "memory:1M", "--size", "1M", "--listen", "127.0.0.1:0"), "--size"),
                Arguments.of(List.of("serve", "memory:1M", "memory:2M", "--listen", "127.0.0.1:0"), "memory:2M"));
    }

    @ParameterizedTest
    @MethodSource("usageErrors")
    void usageErrorsExit2WithOneClearLine(List<String> args, String mention) {
        assertOneClearLine(launch(args.toArray(String[]::new)), 1, mention); // Ceph's rbd-nbd exits 1 too
    }

    @Test
    void missingFileWithoutSizeFailsWithExit1NamingTheFile() {
        Path img = dir.resolve("absent.img");
        Commands.Result r = launch("serve", "file:" + img, "--socket", dir.resolve("a.sock").toString());
        assertOneClearLine(r, 1, img.toString());
        assertFalse(Files.exists(img), "nothing created without --size");
        assertFalse(Files.exists(dir.resolve("a.sock")), "no socket left behind");
    }

    @Test
    void missingFileWithSizeButReadOnlyFailsWithExit1() {
        Path img = dir.resolve("absent-ro.img");
        Commands.Result r = launch("serve", "file:" + img, "--size", "1M", "--read-only", "--listen", "127.0.0.1:0");
        assertOneClearLine(r, 1, img.toString());
        assertFalse(Files.exists(img), "a read-only export creates nothing");
    }

    @Test
    void directoryAsImageFailsWithExit1() throws IOException {
        Path d = Files.createDirectory(dir.resolve("adir"));
        assertOneClearLine(launch("serve", "file:" + d, "--listen", "127.0.0.1:0"), 1, d.toString());
    }

    @Test
    void socketInADirectoryThatDoesNotExistFailsWithExit1() {
        Path sock = dir.resolve("no/such/dir/x.sock");
        assertOneClearLine(launch("serve", "memory:1M", "--socket", sock.toString()), 1, "cannot listen");
    }

    @Test
    void tcpPortInUseFailsWithExit1() throws IOException {
        try (ServerSocketChannel taken = ServerSocketChannel.open()) {
            taken.bind(new InetSocketAddress("127.0.0.1", 0));
            int port = ((InetSocketAddress) taken.getLocalAddress()).getPort();
            assertOneClearLine(launch("serve", "memory:1M", "--listen", "127.0.0.1:" + port), 1, "cannot listen");
        }
    }

    @Test
    void socketInUseByAnotherServerFailsWithExit1AndTheFirstKeepsServing() {
        Path sock = dir.resolve("busy.sock");
        try (ServerProcess first = ServerProcess.start("memory:1M", "--socket", sock.toString())) {
            assertOneClearLine(launch("serve", "memory:2M", "--socket", sock.toString()), 1, "in use");
            Commands.Result r = Commands.ok(Commands.nbdinfo(), "--size", first.uri());
            assertEquals(String.valueOf(1 << 20), r.stdout().trim(), "the first server still owns the socket");
            first.stop();
        }
    }

    @Test
    void staleSocketFileIsReplaced() throws IOException {
        Path sock = dir.resolve("stale.sock");
        // A socket file nobody listens on, as a killed server leaves behind.
        try (ServerSocketChannel dead = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            dead.bind(UnixDomainSocketAddress.of(sock));
        }
        assertTrue(Files.exists(sock), "stale socket file in place");
        try (ServerProcess s = ServerProcess.start("memory:1M", "--socket", sock.toString())) {
            Commands.ok(Commands.nbdinfo(), "--size", s.uri());
            s.stop();
        }
        assertFalse(Files.exists(sock), "the socket file is removed on exit");
    }

    /**
     * {@code --socket} naming something that is not a socket (a typo naming a file, say) must be
     * refused, never deleted as if it were a stale socket.
     */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"regular-file", "empty-directory"})
    void socketPathThatIsNotASocketIsRefusedAndLeftAlone(String what) throws Exception {
        Path victim = dir.resolve("precious");
        if (what.equals("regular-file")) {
            Files.writeString(victim, "precious data\n");
        } else {
            Files.createDirectory(victim);
        }
        Process p = new ProcessBuilder(ServerProcess.launcherCommand("serve", "memory:1M", "--socket", victim.toString()))
                .redirectErrorStream(true)
                .redirectOutput(dir.resolve("out.txt").toFile())
                .start();
        try {
            // Until it exits, or the path stops being what it was (the server took it over).
            long deadline = System.nanoTime() + QUICK.toNanos();
            while (p.isAlive() && System.nanoTime() < deadline
                    && (what.equals("regular-file") ? Files.isRegularFile(victim) : Files.isDirectory(victim))) {
                Thread.sleep(50);
            }
            if (what.equals("regular-file")) {
                assertTrue(Files.isRegularFile(victim) && Files.readString(victim).equals("precious data\n"),
                        "rbd-nbd serve --socket FILE must not delete or replace the file " + victim + "\n"
                                + Files.readString(dir.resolve("out.txt")));
            } else {
                assertTrue(Files.isDirectory(victim), "rbd-nbd serve --socket DIR must not delete the directory\n"
                        + Files.readString(dir.resolve("out.txt")));
            }
            assertTrue(p.waitFor(QUICK.toSeconds(), java.util.concurrent.TimeUnit.SECONDS), "rbd-nbd exits");
            assertEquals(1, p.exitValue(), "exit code\n" + Files.readString(dir.resolve("out.txt")));
            String out = Files.readString(dir.resolve("out.txt"));
            assertTrue(out.lines().anyMatch(l -> l.startsWith("rbd-nbd: ") && l.contains(victim.toString()))
                    && !out.contains("\tat "), "one clear line naming the path:\n" + out);
        } finally {
            p.destroyForcibly();
            p.waitFor(10, java.util.concurrent.TimeUnit.SECONDS);
        }
    }

    @Test
    void socketPathTooLongFailsWithExit1() {
        Path d = dir.resolve("x".repeat(60)).resolve("y".repeat(60));
        Path sock = d.resolve("s.sock");
        try {
            Files.createDirectories(d);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        assertTrue(sock.toString().length() > 108);
        assertOneClearLine(launch("serve", "memory:1M", "--socket", sock.toString()), 1, "cannot listen");
    }

    /**
     * A memory image far beyond what the memory backend can index (the spec parses; opening the
     * backend throws): the command must either fail with one clear line or serve it, never hang
     * after a stack trace.
     */
    @Test
    void memoryImageTooLargeToServeFailsInsteadOfHanging() throws Exception {
        Path out = dir.resolve("out.txt");
        Path err = dir.resolve("err.txt");
        Process p = new ProcessBuilder(ServerProcess.launcherCommand("serve", "memory:8000P", "--listen", "127.0.0.1:0"))
                .redirectOutput(out.toFile())
                .redirectError(err.toFile())
                .start();
        try {
            long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
            while (p.isAlive() && !Files.readString(out).startsWith("nbd://") && System.nanoTime() < deadline) {
                Thread.sleep(100);
            }
            if (p.isAlive() && Files.readString(out).startsWith("nbd://")) {
                p.destroy(); // it serves the image after all: fine, and SIGTERM must still work
                assertTrue(p.waitFor(45, java.util.concurrent.TimeUnit.SECONDS), "exits after SIGTERM");
                assertEquals(0, p.exitValue(), Files.readString(err));
                return;
            }
            assertFalse(p.isAlive(), "rbd-nbd serve memory:8000P neither served nor exited within 20 s\n--- stderr ---\n"
                    + Commands.quote(Files.readString(err)));
            Commands.Result r = new Commands.Result(List.of("rbd-nbd", "serve", "memory:8000P"), p.exitValue(),
                    Files.readString(out), Files.readString(err), Duration.ZERO, false);
            assertTrue(r.exitCode() == 1 || r.exitCode() == 2, "exit 1 or 2\n" + r.describe());
            assertOneClearLine(r, r.exitCode(), "memory");
        } finally {
            p.destroyForcibly();
            p.waitFor(10, java.util.concurrent.TimeUnit.SECONDS);
        }
    }

    /** The printed URI must be a valid URI (percent-encoded) that clients accept as printed. */
    @Test
    void printedUriWorksForASocketPathWithSpacesAndSpecials() throws IOException {
        Path d = Files.createDirectory(dir.resolve("a dir & 100%"));
        Path sock = d.resolve("s#1.sock");
        try (ServerProcess s = ServerProcess.start("memory:1M", "--socket", sock.toString())) {
            Commands.Result r = Commands.run(Commands.nbdinfo(), "--size", s.uri());
            assertEquals(0, r.exitCode(), "nbdinfo with the URI printed for socket '" + sock + "': " + s.uri()
                    + "\n" + r.describe());
            Commands.Result q = Commands.run(Commands.qemuImg(), "info", "-f", "raw", s.uri());
            assertEquals(0, q.exitCode(), "qemu-img with the printed URI " + s.uri() + "\n" + q.describe());
            assertEquals(sock, s.socketPath(), "the URI's socket= decodes to the socket path");
            s.stop();
        }
    }
}
