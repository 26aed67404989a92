package io.rbdnbd.engine.backend;

import io.rbdnbd.nativeio.NativeException;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class FileBackendTest extends BlockBackendContract {
    private static ExecutorService io;

    @TempDir
    Path dir;

    @BeforeAll
    static void startIo() {
        io = Executors.newFixedThreadPool(4);
    }

    @AfterAll
    static void stopIo() {
        io.shutdownNow();
    }

    @Override
    protected BlockBackend create(long size) throws Exception {
        return FileBackend.open(dir.resolve("image.raw"), size, false, io);
    }

    @Test
    void createdImageIsSparseAndWritesReachTheFile() throws Exception {
        Path p = dir.resolve("image.raw");
        assertEquals(SIZE, Files.size(p));
        byte[] a = random(8192, 9);
        await(backend.write(1 << 20, ByteString.fromArray(a), true));
        byte[] onDisk = new byte[8192];
        try (var f = new java.io.RandomAccessFile(p.toFile(), "r")) {
            f.seek(1 << 20);
            f.readFully(onDisk);
        }
        assertArrayEquals(a, onDisk);
        long blocks = (Long) Files.getAttribute(p, "unix:size"); // apparent size stays
        assertEquals(SIZE, blocks);
    }

    @Test
    void existingFileKeepsItsSizeAndMissingFileIsAClearError() throws Exception {
        BlockBackend again = FileBackend.open(dir.resolve("image.raw"), 4096, false, io);
        assertEquals(SIZE, again.size());
        await(again.close());
        NativeException e = assertThrows(NativeException.class,
                () -> FileBackend.open(dir.resolve("missing.raw"), -1, false, io));
        assertTrue(e.getMessage().contains("missing.raw"), e.getMessage());
        assertTrue(e.getMessage().contains("ENOENT"), e.getMessage());
    }

    @Test
    void readOnlyFileRefusesNothingButReportsReadOnly() throws Exception {
        BlockBackend ro = FileBackend.open(dir.resolve("image.raw"), -1, true, io);
        assertTrue(ro.readOnly());
        assertEquals(4096, await(ro.read(0, 4096)).size());
        await(ro.close());
    }

    @Test
    void growingTheFileIsSeenOnRefresh() throws Exception {
        try (var f = new java.io.RandomAccessFile(dir.resolve("image.raw").toFile(), "rw")) {
            f.setLength(SIZE * 2);
        }
        assertEquals(SIZE, backend.size());
        assertEquals(SIZE * 2, await(backend.refreshSize()));
        assertEquals(SIZE * 2, backend.size());
    }
}
