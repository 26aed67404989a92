package io.rbdnbd.nativeio;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class NativeBufferPoolTest {

    @Test
    void sizeClassesArePowersOfTwoFromFourKiB() {
        assertEquals(0, NativeBufferPool.sizeClass(0));
        assertEquals(0, NativeBufferPool.sizeClass(4096));
        assertEquals(1, NativeBufferPool.sizeClass(4097));
        assertEquals(1, NativeBufferPool.sizeClass(8192));
        assertEquals(13, NativeBufferPool.sizeClass(32 << 20));
        assertThrows(IllegalArgumentException.class, () -> NativeBufferPool.sizeClass(-1));
    }

    @Test
    void releasedBuffersAreReusedUpToTheRetainLimit() {
        NativeBufferPool pool = new NativeBufferPool(16384);
        NativeBuffer a = pool.acquire(5000);
        assertEquals(8192, a.capacity());
        ByteBuffer v = a.view(5000);
        v.put(0, (byte) 42);
        assertEquals(5000, v.limit());
        assertTrue(a.address() != 0);
        pool.release(a);
        assertEquals(8192, pool.retainedBytes());
        NativeBuffer again = pool.acquire(8000);
        assertSame(a, again);
        assertEquals(42, again.view(1).get(0));
        assertEquals(0, pool.retainedBytes());

        NativeBuffer big1 = pool.acquire(16384);
        NativeBuffer big2 = pool.acquire(16384);
        pool.release(big1);
        pool.release(big2); // over the limit: freed, not kept
        assertEquals(16384, pool.retainedBytes());
    }
}
