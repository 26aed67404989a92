package io.rbdnbd.actors.jmx;

import java.util.Objects;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/** {@link DeviceInfo#of}: each value from its supplier. */
record SuppliedDeviceInfo(Supplier<String> imageOf, Supplier<String> deviceOf, Supplier<DeviceState> stateOf,
                          LongSupplier sizeOf, LongSupplier restartsOf, Supplier<String> lastErrorOf)
        implements DeviceInfo {

    SuppliedDeviceInfo {
        Objects.requireNonNull(imageOf);
        Objects.requireNonNull(deviceOf);
        Objects.requireNonNull(stateOf);
        Objects.requireNonNull(sizeOf);
        Objects.requireNonNull(restartsOf);
        Objects.requireNonNull(lastErrorOf);
    }

    @Override
    public String image() {
        return imageOf.get();
    }

    @Override
    public String device() {
        return deviceOf.get();
    }

    @Override
    public String state() {
        DeviceState state = stateOf.get();
        return state == null ? null : state.label();
    }

    @Override
    public long sizeBytes() {
        return sizeOf.getAsLong();
    }

    @Override
    public long restarts() {
        return restartsOf.getAsLong();
    }

    @Override
    public String lastError() {
        return lastErrorOf.get();
    }
}
