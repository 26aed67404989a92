package io.rbdnbd.actors.jmx;

import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.stream.IoStats;
import io.rbdnbd.nativeio.Errno;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/** rbd-nbd stats output against a golden file (src/test/resources/stats/). */
class StatsTextTest {
    private static final long SECOND = 1_000_000_000L;

    static String golden(String name) throws IOException {
        try (InputStream in = StatsTextTest.class.getResourceAsStream("/stats/" + name)) {
            assertNotNull(in, "golden file stats/" + name);
            return new String(in.readAllBytes(), UTF_8);
        }
    }

    /** One request answered {@code micros} after dispatch. */
    static void request(IoStats stats, AtomicLong clock, int command, long length, int errno, long micros) {
        long start = stats.started();
        clock.addAndGet(micros * 1000);
        stats.completed(command, length, errno, start);
    }

    /**
     * A busy device: 3 writes that timed out (30 s each) and 1 refused by a lost handle; then for
     * 10 s, 100 4 KiB reads (200 µs) and 50 64 KiB writes (1 ms) a second and one flush (5 ms);
     * one request still in flight.
     */
    static DeviceView busy() {
        AtomicLong clock = new AtomicLong(4900 * SECOND);
        IoStats stats = new IoStats(clock::get);
        for (int i = 0; i < 3; i++) {
            request(stats, clock, Nbd.CMD_WRITE, 4096, Errno.ETIMEDOUT, 30_000_000);
        }
        request(stats, clock, Nbd.CMD_WRITE, 4096, Errno.ESHUTDOWN, 100);
        for (int s = 0; s < 10; s++) {
            clock.set((5000 + s) * SECOND);
            for (int i = 0; i < 100; i++) {
                request(stats, clock, Nbd.CMD_READ, 4096, 0, 200);
            }
            for (int i = 0; i < 50; i++) {
                request(stats, clock, Nbd.CMD_WRITE, 65536, 0, 1000);
            }
            request(stats, clock, Nbd.CMD_FLUSH, 0, 0, 5000);
        }
        stats.started(); // one still in flight
        clock.set(5010 * SECOND + SECOND / 2);
        return new DeviceView(DeviceInfo.of(() -> "rbd/ns1/vm1", () -> "/dev/nbd3", () -> DeviceState.MAPPED,
                () -> 10L << 30, () -> 1, () -> "2025-01-02T03:04:05Z: injected: client blocklisted: ESHUTDOWN"),
                stats);
    }

    static DeviceView idle() {
        return new DeviceView(DeviceInfo.of(() -> "file:/var/tmp/b.img", () -> "/dev/nbd12",
                () -> DeviceState.REOPENING, () -> 1L << 20, () -> 0, () -> ""), new IoStats());
    }

    @Test
    void twoDevicesMatchTheGoldenFile() throws Exception {
        assertEquals(golden("two-devices.txt"), StatsText.format(List.of(busy(), idle())));
    }

    @Test
    void nothingMappedPrintsNothing() {
        assertEquals("", StatsText.format(List.of()));
    }

    @Test
    void mapsInAnyOrderPrintInTheSameOrder() {
        DeviceView view = busy();
        DeviceMXBean shuffled = new DeviceMXBeanWrapper(view) {
            @Override
            public Map<String, Long> getRequests() {
                return reversed(view.getRequests());
            }

            @Override
            public Map<String, Long> getErrorsByErrno() {
                return reversed(view.getErrorsByErrno());
            }
        };
        assertEquals(StatsText.format(view), StatsText.format(shuffled));
    }

    @Test
    void aMultiLineErrorStaysOnOneLine() {
        DeviceView view = new DeviceView(DeviceInfo.of(() -> "x", () -> "/dev/nbd0", () -> DeviceState.MAPPED, () -> 0,
                () -> 0, () -> "first\nsecond"), new IoStats());
        String text = StatsText.format(view);
        assertEquals("LastError: first second", text.lines().filter(l -> l.startsWith("LastError")).findFirst()
                .orElseThrow());
    }

    private static Map<String, Long> reversed(Map<String, Long> m) {
        List<Map.Entry<String, Long>> entries = List.copyOf(m.entrySet());
        Map<String, Long> r = new LinkedHashMap<>();
        for (int i = entries.size() - 1; i >= 0; i--) {
            r.put(entries.get(i).getKey(), entries.get(i).getValue());
        }
        return r;
    }
}
