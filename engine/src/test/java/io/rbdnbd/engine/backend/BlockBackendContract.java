package io.rbdnbd.engine.backend;

import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What every {@link BlockBackend} must do. Each backend's test extends this with a factory;
 * images are {@link #SIZE} bytes and start out never written.
 */
public abstract class BlockBackendContract {
    protected static final long SIZE = 64L << 20;

    protected BlockBackend backend;

    /** A fresh, writable, never-written image of {@code size} bytes. */
    protected abstract BlockBackend create(long size) throws Exception;

    /** Whether trim and unforced write-zeroes deallocate (block status then shows holes). */
    protected boolean deallocates() {
        return true;
    }

    @BeforeEach
    void open() throws Exception {
        backend = create(SIZE);
    }

    @AfterEach
    void close() throws Exception {
        if (backend != null) {
            await(backend.close());
        }
    }

    protected static <T> T await(CompletionStage<T> stage) throws Exception {
        return stage.toCompletableFuture().get(30, TimeUnit.SECONDS);
    }

    protected static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    private byte[] read(long offset, int length) throws Exception {
        ByteString b = await(backend.read(offset, length));
        assertEquals(length, b.size());
        return b.toArray();
    }

    @Test
    void sizeAndWritable() {
        assertEquals(SIZE, backend.size());
        assertFalse(backend.readOnly());
    }

    @Test
    void neverWrittenReadsAsZeroes() throws Exception {
        assertArrayEquals(new byte[100_000], read(12345, 100_000));
        assertArrayEquals(new byte[4096], read(SIZE - 4096, 4096));
    }

    @Test
    void writeThenReadBackAtUnalignedOffsetsAcrossBoundaries() throws Exception {
        byte[] a = random(200_000, 1);
        long off = (1 << 16) - 333; // straddles 64 KiB and 1 MiB boundaries of any chunking
        await(backend.write(off, ByteString.fromArray(a), false));
        assertArrayEquals(a, read(off, a.length));
        byte[] around = read(off - 10, a.length + 20);
        for (int i = 0; i < 10; i++) {
            assertEquals(0, around[i]);
            assertEquals(0, around[around.length - 1 - i]);
        }
    }

    @Test
    void writeOfAComposedByteStringLandsWhole() throws Exception {
        byte[] a = random(5000, 2);
        byte[] b = random(7000, 3);
        await(backend.write(4096, ByteString.fromArray(a).concat(ByteString.fromArray(b)), true));
        byte[] both = read(4096, 12000);
        byte[] expected = new byte[12000];
        System.arraycopy(a, 0, expected, 0, 5000);
        System.arraycopy(b, 0, expected, 5000, 7000);
        assertArrayEquals(expected, both);
    }

    @Test
    void largeWriteAndReadOfFourMiB() throws Exception {
        byte[] a = random(4 << 20, 4);
        await(backend.write(SIZE - a.length, ByteString.fromArray(a), false));
        await(backend.flush());
        assertArrayEquals(a, read(SIZE - a.length, a.length));
    }

    @Test
    void trimReadsAsZeroesAndShowsAHole() throws Exception {
        byte[] a = random(1 << 20, 5);
        await(backend.write(1 << 20, ByteString.fromArray(a), false));
        await(backend.trim((1 << 20) + 4096, 512 * 1024, false));
        byte[] after = read(1 << 20, 1 << 20);
        for (int i = 4096; i < 4096 + 512 * 1024; i++) {
            assertEquals(0, after[i], "byte " + i);
        }
        assertEquals(a[100], after[100]);
        assertEquals(a[(1 << 20) - 1], after[(1 << 20) - 1]);
        if (deallocates()) {
            List<Extent> ext = await(backend.blockStatus((1 << 20) + 65536, 65536 * 4));
            assertEquals(Extent.HOLE_ZERO, ext.get(0).flags(), ext.toString());
        }
    }

    @Test
    void writeZeroesWithAndWithoutHoles() throws Exception {
        byte[] a = random(1 << 20, 6);
        await(backend.write(0, ByteString.fromArray(a), false));
        await(backend.writeZeroes(0, 256 * 1024, false, false));
        await(backend.writeZeroes(256 * 1024, 256 * 1024, true, true));
        assertArrayEquals(new byte[512 * 1024], read(0, 512 * 1024));
        assertEquals(a[600_000], read(600_000, 1)[0]);
        List<Extent> noHole = await(backend.blockStatus(256 * 1024, 256 * 1024));
        assertEquals(Extent.DATA, noHole.get(0).flags() & Extent.HOLE, "NO_HOLE keeps the range allocated: " + noHole);
    }

    @Test
    void blockStatusOfAFreshImageIsOneHole() throws Exception {
        List<Extent> ext = await(backend.blockStatus(0, SIZE));
        assertTrue(ext.size() >= 1);
        assertEquals(Extent.HOLE_ZERO, ext.get(0).flags());
        assertTrue(ext.stream().mapToLong(Extent::length).sum() <= SIZE);
    }

    @Test
    void blockStatusFindsWrittenData() throws Exception {
        await(backend.write(8L << 20, ByteString.fromArray(random(1 << 20, 7)), false));
        await(backend.flush());
        List<Extent> ext = await(backend.blockStatus(0, 16L << 20));
        long pos = 0;
        boolean sawData = false;
        for (Extent e : ext) {
            boolean data = (e.flags() & Extent.HOLE) == 0;
            if (data) {
                sawData = true;
                assertTrue(pos <= 8L << 20 && pos + e.length() >= 9L << 20 || pos >= 8L << 20 && pos + e.length() <= 9L << 20,
                        "data extent " + pos + "+" + e.length() + " outside the written MiB: " + ext);
            } else {
                assertTrue(pos + e.length() <= 8L << 20 || pos >= 9L << 20, "hole over written data: " + ext);
            }
            pos += e.length();
        }
        assertTrue(sawData, ext.toString());
        assertTrue(pos <= 16L << 20);
        List<Extent> from = await(backend.blockStatus((8L << 20) + 100, 4096));
        assertEquals(Extent.DATA, from.get(0).flags() & Extent.HOLE);
        assertTrue(from.stream().mapToLong(Extent::length).sum() <= 4096);
    }

    @Test
    void concurrentWritesToDisjointRangesAllLand() throws Exception {
        List<CompletableFuture<Void>> all = new ArrayList<>();
        for (int i = 0; i < 256; i++) {
            all.add(backend.write(i * 65536L + 512, ByteString.fromArray(random(4096, 100 + i)), i % 7 == 0)
                    .toCompletableFuture());
        }
        CompletableFuture.allOf(all.toArray(CompletableFuture[]::new)).get(30, TimeUnit.SECONDS);
        for (int i = 0; i < 256; i++) {
            assertArrayEquals(random(4096, 100 + i), read(i * 65536L + 512, 4096), "block " + i);
        }
    }

    @Test
    void cacheAndFlushSucceed() throws Exception {
        await(backend.cache(0, 1 << 20));
        await(backend.flush());
    }
}
