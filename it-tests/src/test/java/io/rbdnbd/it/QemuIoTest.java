package io.rbdnbd.it;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** qemu-io commands one by one against the export: patterns, zeroes, discard, bounds, read-only. */
class QemuIoTest {
    private static final long SIZE = 16 << 20;

    @TempDir
    Path dir;

    private String[] image(String kind) {
        return kind.equals("memory")
                ? new String[]{"memory:16M"}
                : new String[]{"file:" + dir.resolve("io.img"), "--size", "16M"};
    }

    @ParameterizedTest
    @ValueSource(strings = {"memory", "file"})
    void writeReadZeroDiscard(String kind) {
        String[] args = NbdInfoTest.concat(image(kind), new String[]{"--socket", dir.resolve("io.sock").toString()});
        try (ServerProcess s = ServerProcess.start(args)) {
            Commands.Result dump = Commands.qemuIoOk(s, s.uri(),
                    "write -P 0xab 0 64k",
                    "read -v 0 32",
                    "read -P 0xab 0 64k");
            assertTrue(dump.stdout().contains("ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab"),
                    "read -v dumps the pattern written:\n" + dump.stdout());

            Commands.qemuIoOk(s, s.uri(),
                    "write -z 0 64k",
                    "read -P 0 0 64k");
            Commands.qemuIoOk(s, s.uri(),
                    "write -P 0xcd 64k 64k",
                    "read -P 0xcd 64k 64k",
                    "discard 64k 64k",
                    "read -P 0 64k 64k");
            // Write-zeroes that may unmap, a FUA write, a flush, a sub-sector write inside a pattern.
            Commands.qemuIoOk(s, s.uri(),
                    "write -P 0x5a 1M 256k",
                    "write -z -u 1M 128k",
                    "read -P 0 1M 128k",
                    "read -P 0x5a 1152k 128k",
                    "write -f -P 0x12 2M 4k",
                    "flush",
                    "read -P 0x12 2M 4k",
                    "write -P 0x34 3M 4k",
                    "write -P 0x99 3075k 3",
                    "read -P 0x34 3M 3k",
                    "read -P 0x99 3075k 3",
                    "read -P 0x34 " + (3075 * 1024 + 3) + " " + (1024 - 3));
            // A fresh connection sees everything the previous ones wrote.
            Commands.qemuIoOk(s, s.uri(),
                    "read -P 0 0 128k",
                    "read -P 0x12 2M 4k",
                    "read -P 0x99 3075k 3");
            s.stop();
        }
    }

    @Test
    void writesAndReadsPastTheEndFail() {
        try (ServerProcess s = ServerProcess.start("memory:16M", "--socket", dir.resolve("end.sock").toString())) {
            for (String cmd : new String[]{
                    "write -P 1 " + SIZE + " 4k",
                    "write -P 1 " + (SIZE - 2048) + " 4k",
                    "read " + (SIZE - 512) + " 4k"}) {
                Commands.Result r = Commands.qemuIo(s.uri(), false, cmd);
                assertTrue(r.exitCode() != 0 && r.output().contains("failed"),
                        "`" + cmd + "` beyond the end of a " + SIZE + "-byte export must fail\n" + r.describe());
            }
            // The last bytes inside the export still work.
            Commands.qemuIoOk(s, s.uri(),
                    "write -P 0x42 " + (SIZE - 4096) + " 4k",
                    "read -P 0x42 " + (SIZE - 4096) + " 4k");
            s.stop();
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"memory", "file"})
    void readOnlyExportRefusesWritesAndServesReads(String kind) throws IOException {
        Path img = dir.resolve("ro.img");
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(SIZE);
            f.seek(1 << 20);
            byte[] b = new byte[65536];
            java.util.Arrays.fill(b, (byte) 0x3c);
            f.write(b);
        }
        String spec = kind.equals("memory") ? "memory:16M" : "file:" + img;
        try (ServerProcess s = ServerProcess.start(spec, "--read-only", "--socket", dir.resolve("ro.sock").toString())) {
            // qemu opens read-write by default: the read-only flag makes that fail with EPERM.
            Commands.Result rw = Commands.qemuIo(s.uri(), false, "write -P 1 0 4k");
            assertNotEquals(0, rw.exitCode(), "writing a read-only export must fail\n" + rw.describe());
            assertTrue(rw.output().contains("Permission denied") || rw.output().contains("read-only"),
                    "the failure says why (EPERM / read-only)\n" + rw.describe());

            Commands.Result ro = Commands.qemuIo(s.uri(), true, "write -P 1 0 4k");
            assertNotEquals(0, ro.exitCode(), "writing a read-only export must fail\n" + ro.describe());

            String expected = kind.equals("memory") ? "0" : "0x3c";
            Commands.Result reads = Commands.qemuIo(s.uri(), true, "read -P 0 0 64k", "read -P " + expected + " 1M 64k");
            if (reads.exitCode() != 0 || reads.output().contains("failed")) {
                fail("reads of a read-only export work\n" + reads.describe() + "\n" + s.describe());
            }
            s.stop();
        }
        if (kind.equals("file")) {
            // Nothing was written to the backing file.
            try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "r")) {
                byte[] b = new byte[4096];
                f.readFully(b);
                for (byte x : b) {
                    if (x != 0) {
                        fail("the read-only export's file was written to");
                    }
                }
            }
        }
    }
}
