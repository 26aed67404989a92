package io.rbdnbd.it;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** libnbd's nbdcopy: a random image into a memory export and back, on one and on four connections. */
class NbdCopyTest {
    private static final int MIB = 1 << 20;

    @TempDir
    Path dir;

    static Path randomFile(Path file, long mib, long seed) throws IOException {
        Random random = new Random(seed);
        byte[] block = new byte[MIB];
        try (OutputStream out = Files.newOutputStream(file)) {
            for (long i = 0; i < mib; i++) {
                random.nextBytes(block);
                out.write(block);
            }
        }
        return file;
    }

    private static Commands.Result nbdcopy(ServerProcess s, String... args) {
        String[] cmd = new String[args.length + 1];
        cmd[0] = Commands.nbdcopy();
        System.arraycopy(args, 0, cmd, 1, args.length);
        Commands.Result r = Commands.run(cmd);
        if (r.exitCode() != 0) {
            fail(r.describe() + "\n" + s.describe());
        }
        return r;
    }

    private static void assertSameContent(Path expected, Path actual) throws IOException {
        long mismatch = Files.mismatch(expected, actual);
        assertEquals(-1, mismatch, actual + " differs from " + expected + " first at byte " + mismatch
                + " (sizes " + Files.size(expected) + " and " + Files.size(actual) + ")");
    }

    @Test
    void roundTripThroughAMemoryExport() throws IOException {
        Path src = randomFile(dir.resolve("src.img"), 64, 1);
        try (ServerProcess s = ServerProcess.start("memory:64M", "--socket", dir.resolve("c.sock").toString())) {
            nbdcopy(s, src.toString(), s.uri());
            Path back = dir.resolve("back.img");
            nbdcopy(s, s.uri(), back.toString());
            assertSameContent(src, back);
            s.stop();
        }
    }

    @Test
    void roundTripOnFourConnections() throws IOException {
        Path first = randomFile(dir.resolve("first.img"), 64, 2);
        Path second = randomFile(dir.resolve("second.img"), 64, 3);
        try (ServerProcess s = ServerProcess.start("memory:64M", "--socket", dir.resolve("mc.sock").toString(),
                "--listen", "127.0.0.1:0")) {
            // nbdcopy opens as many connections as threads at most; ask for 4 of each. It uses
            // more than one only when the server advertises multi-conn.
            Commands.Result in = nbdcopy(s, "-v", "--connections=4", "--threads=4", first.toString(), s.unixUri());
            assertTrue(in.stderr().contains("connections=4"),
                    "nbdcopy used 4 connections (needs can_multi_conn):\n" + nbdcopyHeader(in));
            Path back = dir.resolve("back.img");
            Commands.Result out = nbdcopy(s, "-v", "--connections=4", "--threads=4", s.unixUri(), back.toString());
            assertTrue(out.stderr().contains("connections=4"), nbdcopyHeader(out));
            assertSameContent(first, back);

            // Overwrite everything over TCP on four connections, read back on four: the new data only.
            nbdcopy(s, "--connections=4", "--threads=4", second.toString(), s.tcpUri());
            Path back2 = dir.resolve("back2.img");
            nbdcopy(s, "--connections=4", "--threads=4", s.tcpUri(), back2.toString());
            assertSameContent(second, back2);
            s.stop();
        }
    }

    /** nbdcopy's own lines of a verbose run (not libnbd's debug lines). */
    private static String nbdcopyHeader(Commands.Result r) {
        StringBuilder b = new StringBuilder();
        for (String line : r.stderr().split("\n")) {
            if (line.startsWith("nbdcopy:")) {
                b.append(line).append('\n');
            }
        }
        return b.toString();
    }
}
