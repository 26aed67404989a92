package io.rbdnbd.it;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** What libnbd's nbdinfo sees of an export: size, transmission flags, allocation map. */
class NbdInfoTest {
    private static final long MIB = 1 << 20;
    private static final long KIB = 1 << 10;

    @TempDir
    Path dir;

    /** A top-level scalar of nbdinfo's JSON (the export fields are unique keys). */
    static String jsonField(String json, String key) {
        Matcher m = Pattern.compile("\"" + Pattern.quote(key) + "\"\\s*:\\s*(\"[^\"]*\"|[^,\\s}\\]]+)").matcher(json);
        if (!m.find()) {
            fail("nbdinfo --json has no \"" + key + "\":\n" + json);
        }
        String v = m.group(1);
        return v.startsWith("\"") ? v.substring(1, v.length() - 1) : v;
    }

    private static String info(String uri, ServerProcess server) {
        Commands.Result r = Commands.run(Commands.nbdinfo(), "--json", uri);
        if (r.exitCode() != 0) {
            fail(r.describe() + "\n" + server.describe());
        }
        return r.stdout();
    }

    private static void assertWritableFlags(String json, long size, String where) {
        assertEquals(String.valueOf(size), jsonField(json, "export-size"), where + ": export-size\n" + json);
        assertEquals("false", jsonField(json, "is_read_only"), where + ": is_read_only\n" + json);
        for (String flag : List.of("can_trim", "can_zero", "can_flush", "can_fua", "can_multi_conn")) {
            assertEquals("true", jsonField(json, flag), where + ": " + flag + "\n" + json);
        }
        assertEquals("true", jsonField(json, "structured"), where + ": structured replies\n" + json);
        assertTrue(json.contains("\"base:allocation\""), where + ": base:allocation context offered\n" + json);
    }

    @Test
    void memoryExportSizeAndFlagsOnUnixSocketAndTcp() {
        try (ServerProcess s = ServerProcess.start("memory:64M", "--socket", dir.resolve("m.sock").toString(),
                "--listen", "127.0.0.1:0")) {
            assertEquals(2, s.uris().size(), "one URI per listener: " + s.uris());
            assertEquals("nbd+unix:///?socket=" + dir.resolve("m.sock"), s.unixUri());
            assertTrue(s.tcpUri().matches("nbd://127\\.0\\.0\\.1:\\d+/"), "TCP URI " + s.tcpUri());
            assertTrue(s.tcpPort() > 0, "a real port, not 0: " + s.tcpUri());
            for (String uri : s.uris()) {
                assertWritableFlags(info(uri, s), 64 * MIB, uri);
            }
            assertEquals(List.of(), s.extraStdout(), "stdout carries only the URIs");
            s.stop();
        }
    }

    @Test
    void fileExportCreatedSparseWithSize() {
        Path img = dir.resolve("new.img");
        try (ServerProcess s = ServerProcess.start("file:" + img, "--size", "100M", "--socket",
                dir.resolve("f.sock").toString())) {
            assertTrue(Files.isRegularFile(img), "--size created " + img);
            assertEquals(100 * MIB, img.toFile().length(), "size of the created file");
            assertTrue(Commands.allocatedBytes(img) <= 64 * KIB,
                    "created sparse, but " + Commands.allocatedBytes(img) + " bytes are allocated");
            assertWritableFlags(info(s.uri(), s), 100 * MIB, s.uri());
            s.stop();
        }
    }

    @Test
    void fileExportKeepsTheSizeOfAnExistingFile() throws IOException {
        Path img = dir.resolve("old.img");
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(3 * MIB + 512);
        }
        try (ServerProcess s = ServerProcess.start("file:" + img, "--size", "10M", "--listen", "127.0.0.1:0")) {
            String json = info(s.uri(), s);
            assertEquals(String.valueOf(3 * MIB + 512), jsonField(json, "export-size"), json);
            assertEquals(3 * MIB + 512, img.toFile().length(), "the file was not resized");
            s.stop();
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"memory", "file"})
    void readOnlyExportAdvertisesReadOnly(String kind) throws IOException {
        Path img = dir.resolve("ro.img");
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(16 * MIB);
        }
        String spec = kind.equals("memory") ? "memory:16M" : "file:" + img;
        try (ServerProcess s = ServerProcess.start(spec, "--read-only", "--socket", dir.resolve("ro.sock").toString())) {
            String json = info(s.uri(), s);
            assertEquals(String.valueOf(16 * MIB), jsonField(json, "export-size"), json);
            assertEquals("true", jsonField(json, "is_read_only"), json);
            assertEquals("false", jsonField(json, "can_trim"), "no trim on a read-only export\n" + json);
            assertEquals("false", jsonField(json, "can_zero"), "no write-zeroes on a read-only export\n" + json);
            s.stop();
        }
    }

    /**
     * Data written at known offsets (qemu-io through the export) must be exactly the data
     * extents of {@code nbdinfo --map}; everything else, including a discarded range, reads as
     * {@code hole,zero}.
     */
    @ParameterizedTest
    @ValueSource(strings = {"memory", "file"})
    void mapShowsDataExactlyWhereWritten(String kind) {
        long size = 64 * MIB;
        String spec = kind.equals("memory") ? "memory:64M" : "file:" + dir.resolve("map.img");
        String[] sizeArg = kind.equals("memory") ? new String[0] : new String[]{"--size", "64M"};
        String[] args = concat(new String[]{spec}, sizeArg, new String[]{"--socket", dir.resolve("map.sock").toString()});
        try (ServerProcess s = ServerProcess.start(args)) {
            String before = Commands.ok(Commands.nbdinfo(), "--map", s.uri()).stdout();
            assertEquals(Extents.expected(size, "hole,zero"), Extents.parseNbdinfoMap(before),
                    "a fresh " + kind + " export is one hole\n" + before + "\n" + s.describe());

            Commands.qemuIoOk(s, s.uri(),
                    "write -P 0xab 1M 64k",
                    "write -P 0xcd 8M 256k",
                    "write -P 0xef 16M 128k",
                    "discard 16M 128k",
                    "write -P 0x11 " + (size - 64 * KIB) + " 64k");
            String map = Commands.ok(Commands.nbdinfo(), "--map", s.uri()).stdout();
            List<Extents.Extent> expected = Extents.expected(size, "hole,zero",
                    MIB, 64 * KIB,
                    8 * MIB, 256 * KIB,
                    size - 64 * KIB, 64 * KIB);
            assertEquals(expected, Extents.parseNbdinfoMap(map), "nbdinfo --map of the " + kind + " export:\n" + map);

            // The data itself, read back by another client, and the discarded range reads zeroes.
            Commands.qemuIoOk(s, s.uri(),
                    "read -P 0xab 1M 64k",
                    "read -P 0 0 1M",
                    "read -P 0xcd 8M 256k",
                    "read -P 0 16M 128k",
                    "read -P 0x11 " + (size - 64 * KIB) + " 64k");
            s.stop();
        }
    }

    /** An export whose size is not a multiple of any block size: size, map and the last bytes. */
    @Test
    void oddSizedMemoryExport() {
        long size = 1_000_003;
        try (ServerProcess s = ServerProcess.start("memory:" + size, "--socket", dir.resolve("odd.sock").toString())) {
            String json = info(s.uri(), s);
            assertEquals(String.valueOf(size), jsonField(json, "export-size"), json);
            String map = Commands.ok(Commands.nbdinfo(), "--map", s.uri()).stdout();
            assertEquals(Extents.expected(size, "hole,zero"), Extents.parseNbdinfoMap(map), map);

            Commands.qemuIoOk(s, s.uri(),
                    "write -P 0x77 " + (size - 3) + " 3",
                    "read -P 0x77 " + (size - 3) + " 3",
                    "read -P 0 " + (size - 1003) + " 1000");
            String after = Commands.ok(Commands.nbdinfo(), "--map", s.uri()).stdout();
            List<Extents.Extent> extents = Extents.parseNbdinfoMap(after);
            Extents.Extent last = extents.get(extents.size() - 1);
            assertEquals(size, last.end(), "the map ends at the export's end:\n" + after);
            assertEquals("data", last.kind(), "the written tail is data:\n" + after);
            s.stop();
        }
    }

    static String[] concat(String[]... parts) {
        return java.util.Arrays.stream(parts).flatMap(java.util.Arrays::stream).toArray(String[]::new);
    }
}
