package io.rbdnbd.actors.jmx;

import io.rbdnbd.engine.stream.IoStats;

import java.util.Map;
import java.util.Objects;

/**
 * A device's {@link DeviceMXBean}: its {@link DeviceInfo} and {@link IoStats}, read when asked.
 * Each statistics attribute takes its own snapshot, so attributes read one after the other may
 * be a few requests apart; {@link #stats()} gives one consistent snapshot.
 */
public final class DeviceView implements DeviceMXBean {
    private final DeviceInfo info;
    private final IoStats stats;

    public DeviceView(DeviceInfo info, IoStats stats) {
        this.info = Objects.requireNonNull(info);
        this.stats = Objects.requireNonNull(stats);
    }

    /** Every statistic at one moment (not an attribute: MXBean getters start with "get"). */
    public IoStats.Snapshot stats() {
        return stats.snapshot();
    }

    @Override
    public String getImage() {
        return nonNull(info.image());
    }

    @Override
    public String getDevice() {
        return nonNull(info.device());
    }

    @Override
    public String getState() {
        return nonNull(info.state());
    }

    @Override
    public long getSizeBytes() {
        return info.sizeBytes();
    }

    @Override
    public long getInFlight() {
        return stats.inFlight();
    }

    @Override
    public double getReadIops() {
        return stats.snapshot().readIops();
    }

    @Override
    public double getWriteIops() {
        return stats.snapshot().writeIops();
    }

    @Override
    public double getReadBytesPerSecond() {
        return stats.snapshot().readBytesPerSecond();
    }

    @Override
    public double getWriteBytesPerSecond() {
        return stats.snapshot().writeBytesPerSecond();
    }

    @Override
    public Map<String, Long> getRequests() {
        return stats.snapshot().requests();
    }

    @Override
    public Map<String, Long> getBytes() {
        return stats.snapshot().bytes();
    }

    @Override
    public Map<String, Long> getErrors() {
        return stats.snapshot().errors();
    }

    @Override
    public Map<String, Long> getErrorsByErrno() {
        return stats.snapshot().errorsByErrno();
    }

    @Override
    public long getLatencyP50Micros() {
        return stats.snapshot().latencyP50Micros();
    }

    @Override
    public long getLatencyP90Micros() {
        return stats.snapshot().latencyP90Micros();
    }

    @Override
    public long getLatencyP99Micros() {
        return stats.snapshot().latencyP99Micros();
    }

    @Override
    public long getLatencyP999Micros() {
        return stats.snapshot().latencyP999Micros();
    }

    @Override
    public long getSupervisorRestarts() {
        return info.restarts();
    }

    @Override
    public String getLastError() {
        return nonNull(info.lastError());
    }

    /** JMX clients show null as "Unavailable": the interface promises "" instead. */
    private static String nonNull(String s) {
        return s == null ? "" : s;
    }
}
