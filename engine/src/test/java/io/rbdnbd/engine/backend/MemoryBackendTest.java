package io.rbdnbd.engine.backend;

import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

class MemoryBackendTest extends BlockBackendContract {
    @Override
    protected BlockBackend create(long size) {
        return new MemoryBackend(size);
    }

    @Test
    void aTebibyteImageCostsOnlyWhatIsWritten() throws Exception {
        MemoryBackend big = new MemoryBackend(1L << 40);
        assertEquals(0, big.allocatedBytes());
        await(big.write((1L << 40) - 4096, ByteString.fromArray(new byte[4096]), false));
        await(big.write(1L << 39, ByteString.fromArray(new byte[100]), false));
        assertEquals(2L * MemoryBackend.CHUNK, big.allocatedBytes());
        await(big.trim(0, 1L << 39, false)); // the first half: the chunk at 512 GiB is just past it
        await(big.writeZeroes((1L << 40) - MemoryBackend.CHUNK, MemoryBackend.CHUNK, false, false));
        assertEquals(MemoryBackend.CHUNK, big.allocatedBytes()); // the one at 512 GiB was not in a dropped range
    }

    /** A memory image takes its whole size from the heap at open, so filling it cannot starve the others. */
    @Test
    void memoryImagesArePromisedTheirSizeFromTheHeapAndGiveItBack() throws Exception {
        long mib = 1 << 20;
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> MemoryBackend.promised(2048 * mib, 100_000 * mib, 1024 * mib), "larger than the RAM");
        MemoryBackend a = MemoryBackend.promised(60 * mib, 100 * mib, 0);
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> MemoryBackend.promised(20 * mib, 100 * mib, 0));
        org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().contains("60 MiB are promised"), e.getMessage());
        await(a.close());
        await(MemoryBackend.promised(70 * mib, 100 * mib, 0).close());
        await(a.close()); // closing twice gives nothing back twice
        await(MemoryBackend.promised(75 * mib, 100 * mib, 0).close());
    }
}
