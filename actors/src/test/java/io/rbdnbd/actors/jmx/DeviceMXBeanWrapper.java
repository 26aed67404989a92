package io.rbdnbd.actors.jmx;

import java.util.Map;

/** A {@link DeviceMXBean} passing every attribute on to another, for tests to override some. */
class DeviceMXBeanWrapper implements DeviceMXBean {
    private final DeviceMXBean inner;

    DeviceMXBeanWrapper(DeviceMXBean inner) {
        this.inner = inner;
    }

    @Override
    public String getImage() {
        return inner.getImage();
    }

    @Override
    public String getDevice() {
        return inner.getDevice();
    }

    @Override
    public String getState() {
        return inner.getState();
    }

    @Override
    public long getSizeBytes() {
        return inner.getSizeBytes();
    }

    @Override
    public long getInFlight() {
        return inner.getInFlight();
    }

    @Override
    public double getReadIops() {
        return inner.getReadIops();
    }

    @Override
    public double getWriteIops() {
        return inner.getWriteIops();
    }

    @Override
    public double getReadBytesPerSecond() {
        return inner.getReadBytesPerSecond();
    }

    @Override
    public double getWriteBytesPerSecond() {
        return inner.getWriteBytesPerSecond();
    }

    @Override
    public Map<String, Long> getRequests() {
        return inner.getRequests();
    }

    @Override
    public Map<String, Long> getBytes() {
        return inner.getBytes();
    }

    @Override
    public Map<String, Long> getErrors() {
        return inner.getErrors();
    }

    @Override
    public Map<String, Long> getErrorsByErrno() {
        return inner.getErrorsByErrno();
    }

    @Override
    public long getLatencyP50Micros() {
        return inner.getLatencyP50Micros();
    }

    @Override
    public long getLatencyP90Micros() {
        return inner.getLatencyP90Micros();
    }

    @Override
    public long getLatencyP99Micros() {
        return inner.getLatencyP99Micros();
    }

    @Override
    public long getLatencyP999Micros() {
        return inner.getLatencyP999Micros();
    }

    @Override
    public long getSupervisorRestarts() {
        return inner.getSupervisorRestarts();
    }

    @Override
    public String getLastError() {
        return inner.getLastError();
    }
}
