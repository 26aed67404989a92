package io.rbdnbd.actors.jmx;

import io.rbdnbd.engine.backend.ReopenableBackend;

import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * What a {@link DeviceView} shows besides the I/O statistics, read anew each time it is asked
 * for: the daemon owns these values and may change them at any time (the device known once
 * attached, the state moving on, the image resized).
 */
public interface DeviceInfo {
    String image();

    /** {@code /dev/nbdN}, or "" while not yet attached. */
    String device();

    /** One of {@link DeviceState}'s labels. */
    String state();

    long sizeBytes();

    /** How many times the image was reopened. */
    long restarts();

    /** The last failure worth showing, or "". */
    String lastError();

    /** A {@link DeviceInfo} that asks the given suppliers. */
    static DeviceInfo of(Supplier<String> image, Supplier<String> device, Supplier<DeviceState> state,
                         LongSupplier sizeBytes, LongSupplier restarts, Supplier<String> lastError) {
        return new SuppliedDeviceInfo(image, device, state, sizeBytes, restarts, lastError);
    }

    /**
     * The usual device: size, restarts and last error from the image's {@link ReopenableBackend}
     * (its reopen count, its last lost handle as {@code "TIME: cause"}); the device path and the
     * state from the daemon.
     */
    static DeviceInfo of(String image, Supplier<String> device, Supplier<DeviceState> state, ReopenableBackend backend) {
        return of(() -> image, device, state, backend::size, backend::generation,
                () -> backend.lastLoss().map(l -> l.at() + ": " + l.cause()).orElse(""));
    }
}
