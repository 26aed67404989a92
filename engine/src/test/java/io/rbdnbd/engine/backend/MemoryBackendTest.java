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
}
