package io.rbdnbd.it;

import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * qemu-img (qemu's NBD client) converting a sparse raw image into the export and back out:
 * content equal, holes reported as holes, and sparseness kept on both sides.
 */
class QemuImgTest {
    private static final long MIB = 1 << 20;
    private static final long SIZE = 64 * MIB;
    /** Random data at scattered offsets: (offset, length) pairs. */
    private static final long[] DATA = {1 * MIB, 3 * MIB, 20 * MIB, 2 * MIB, 50 * MIB, 1 * MIB};
    private static final long DATA_BYTES = 6 * MIB;

    @TempDir
    Path dir;

    /** A sparse raw image made by qemu-img, with random bytes written at {@link #DATA}. */
    static Path sparseSource(Path dir, long seed) throws IOException {
        Path src = dir.resolve("src.img");
        Commands.ok(Commands.qemuImg(), "create", "-q", "-f", "raw", src.toString(), String.valueOf(SIZE));
        Random random = new Random(seed);
        try (FileChannel ch = FileChannel.open(src, StandardOpenOption.WRITE)) {
            for (int i = 0; i < DATA.length; i += 2) {
                byte[] b = new byte[(int) DATA[i + 1]];
                random.nextBytes(b);
                ByteBuffer buf = ByteBuffer.wrap(b);
                long pos = DATA[i];
                while (buf.hasRemaining()) {
                    pos += ch.write(buf, pos);
                }
            }
            ch.force(true);
        }
        assertEquals(SIZE, src.toFile().length());
        return src;
    }

    private static Commands.Result qemuImg(ServerProcess s, String... args) {
        String[] cmd = new String[args.length + 1];
        cmd[0] = Commands.qemuImg();
        System.arraycopy(args, 0, cmd, 1, args.length);
        Commands.Result r = Commands.run(cmd);
        if (r.exitCode() != 0) {
            fail(r.describe() + "\n" + s.describe());
        }
        return r;
    }

    @ParameterizedTest
    @ValueSource(strings = {"memory", "file"})
    void convertIntoTheExportAndBackOutStaysEqualAndSparse(String kind) throws IOException {
        Path src = sparseSource(dir, 42);
        Path backing = dir.resolve("export.img");
        String[] image = kind.equals("memory")
                ? new String[]{"memory:" + SIZE}
                : new String[]{"file:" + backing, "--size", String.valueOf(SIZE)};
        String[] args = NbdInfoTest.concat(image,
                new String[]{"--socket", dir.resolve("q.sock").toString(), "--listen", "127.0.0.1:0"});
        try (ServerProcess s = ServerProcess.start(args)) {
            String uri = s.unixUri();

            qemuImg(s, "convert", "-n", "-f", "raw", "-O", "raw", src.toString(), uri);

            Commands.Result cmp = qemuImg(s, "compare", "-f", "raw", "-F", "raw", src.toString(), uri);
            assertTrue(cmp.stdout().contains("Images are identical"), cmp.describe());
            // The same export through the TCP listener, and through qemu's legacy nbd:unix: syntax.
            qemuImg(s, "compare", "-f", "raw", "-F", "raw", src.toString(), s.tcpUri());
            qemuImg(s, "compare", "-f", "raw", "-F", "raw", src.toString(), "nbd:unix:" + s.socketPath());

            String map = qemuImg(s, "map", "-f", "raw", "--output=json", uri).stdout();
            assertEquals(Extents.expected(SIZE, "zero", DATA), Extents.parseQemuMap(map),
                    "qemu-img map of the " + kind + " export: data where the source has data, holes (zero: true,"
                            + " data: false) elsewhere\n" + map);

            if (kind.equals("file")) {
                long allocated = Commands.allocatedBytes(backing);
                assertTrue(allocated >= DATA_BYTES && allocated <= DATA_BYTES + 2 * MIB,
                        "the export's backing file holds the " + DATA_BYTES + " data bytes and stays sparse, but "
                                + allocated + " bytes are allocated");
            }

            Path out = dir.resolve("out.img");
            qemuImg(s, "convert", "-f", "raw", "-O", "raw", uri, out.toString());
            assertEquals(SIZE, out.toFile().length(), "size of the image converted out of the export");
            Commands.Result back = qemuImg(s, "compare", "-f", "raw", "-F", "raw", src.toString(), out.toString());
            assertTrue(back.stdout().contains("Images are identical"), back.describe());
            long outAllocated = Commands.allocatedBytes(out);
            assertTrue(outAllocated <= DATA_BYTES + 2 * MIB,
                    "the image converted out stays sparse: " + outAllocated + " bytes allocated for "
                            + DATA_BYTES + " bytes of data");
            List<Extents.Extent> outMap = Extents.parseQemuMap(
                    qemuImg(s, "map", "-f", "raw", "--output=json", out.toString()).stdout());
            long outData = outMap.stream().filter(e -> e.kind().startsWith("data")).mapToLong(Extents.Extent::length).sum();
            assertTrue(outData <= DATA_BYTES + MIB, "data extents of the converted image: " + outMap);
            s.stop();
        }
    }
}
