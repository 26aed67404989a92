package io.rbdnbd.engine.stream;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class MemoryBoundTest {
    private static final long MIB = 1 << 20;

    @Test
    void anExportsBoundWithTheDefaults() {
        MemoryBound b = MemoryBound.export(EngineSettings.with(), 256, 0);
        assertEquals((64 + 64 + 256) * MIB, b.heapBytes(), "base + in flight + 256 connections x 4 x 256 KiB");
        assertEquals((128 + 16) * MIB, b.directBytes(), "256 connections x 2 x 256 KiB + 16 file-io threads x 1 MiB");
        assertEquals(List.of("-Xmx481m", "-XX:MaxDirectMemorySize=145m"), b.jvmOptions());
    }

    @Test
    void aMemoryImageIsPartOfTheHeap() {
        assertEquals((64 + 64 + 4 + 100) * MIB,
                MemoryBound.export(EngineSettings.with(), 4, 100 * MIB).heapBytes());
    }

    @Test
    void kernelDevicesShareOneInFlightBudget() {
        MemoryBound b = MemoryBound.kernelDevices(EngineSettings.with(), 64, 2, 128 * MIB);
        assertEquals((64 + 128 + 128) * MIB, b.heapBytes(), "base + shared in flight + 128 sockets x 1 MiB");
        assertEquals((64 + 16) * MIB, b.directBytes(), "128 sockets x 512 KiB + 16 file-io threads x 1 MiB");
    }

    @Test
    void aJvmBelowTheBoundIsRefusedWithTheOptionsThatFit() {
        MemoryBound b = MemoryBound.export(EngineSettings.with(), 256, 0);
        assertDoesNotThrow(() -> b.requireFits(400 * MIB, 200 * MIB));
        IllegalStateException heap = assertThrows(IllegalStateException.class, () -> b.requireFits(256 * MIB, 200 * MIB));
        assertTrue(heap.getMessage().contains("export.max-connections 256")
                && heap.getMessage().contains("RBDNBD_JAVA_OPTS=\"-Xmx481m -XX:MaxDirectMemorySize=145m\""),
                heap.getMessage());
        assertThrows(IllegalStateException.class, () -> b.requireFits(400 * MIB, 64 * MIB));
    }

    @Test
    void theJvmSizedFromABoundHoldsIt() {
        // what the daemon map starts gets: Runtime.maxMemory() is a little below -Xmx (one survivor
        // space), the quarter on top covers that
        MemoryBound b = MemoryBound.kernelDevices(EngineSettings.with(), 64, 2, 128 * MIB);
        long xmx = Long.parseLong(b.jvmOptions().get(0).replaceAll("\\D", "")) * MIB;
        assertTrue(xmx * 0.85 >= b.heapBytes(), "-Xmx leaves room for the collector");
        assertTrue(MemoryBound.maxDirectMemory() > 0);
    }
}
