package io.rbdnbd.actors.jmx;

import io.rbdnbd.engine.backend.MemoryBackend;
import io.rbdnbd.engine.backend.ReopenableBackend;
import io.rbdnbd.engine.backend.ScriptedBackend;
import io.rbdnbd.engine.stream.IoStats;
import io.rbdnbd.nativeio.Errno;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class DeviceViewTest {
    @Test
    void aDeviceOverAReopenableBackendShowsItsRestartsAndLastLoss() throws Exception {
        ScriptedBackend first = new ScriptedBackend(new MemoryBackend(1 << 20));
        ReopenableBackend image = new ReopenableBackend(first, Duration.ofSeconds(30), lost -> { });
        AtomicReference<DeviceState> state = new AtomicReference<>(DeviceState.MAPPING);
        DeviceView view = new DeviceView(DeviceInfo.of("rbd/vm1", () -> "/dev/nbd5", state::get, image),
                new IoStats());
        assertEquals("mapping", view.getState());
        assertEquals(1 << 20, view.getSizeBytes());
        assertEquals(0, view.getSupervisorRestarts());
        assertEquals("", view.getLastError());

        first.setFault(ScriptedBackend.fatalAfter(0, Errno.ESHUTDOWN));
        assertThrows(ExecutionException.class, () -> image.read(0, 512).toCompletableFuture().get(10, TimeUnit.SECONDS));
        state.set(DeviceState.REOPENING);
        image.replace(new ScriptedBackend(new MemoryBackend(2 << 20)));
        state.set(DeviceState.MAPPED);

        assertEquals("mapped", view.getState());
        assertEquals(2 << 20, view.getSizeBytes());
        assertEquals(1, view.getSupervisorRestarts());
        String error = view.getLastError();
        assertTrue(error.matches("\\d{4}-\\d\\d-\\d\\dT.*Z: .*ESHUTDOWN.*"), error);
        assertEquals("rbd/vm1", view.getImage());
        assertEquals("/dev/nbd5", view.getDevice());
    }

    @Test
    void nullTextIsShownEmpty() {
        DeviceView view = new DeviceView(DeviceInfo.of(() -> null, () -> null, () -> null, () -> 0, () -> 0,
                () -> null), new IoStats());
        assertEquals("", view.getImage());
        assertEquals("", view.getDevice());
        assertEquals("", view.getState());
        assertEquals("", view.getLastError());
    }
}
