package io.rbdnbd.actors.jmx;

import java.util.Map;

/**
 * One mapped device as JMX shows it ({@code io.rbdnbd:type=Device,name=nbdN}, see
 * {@link JmxRegistry}), and as {@code rbd-nbd stats} prints it ({@link StatsText}). Read-only:
 * every attribute is read when asked for, nothing is cached.
 *
 * <p>Counters and latency percentiles are cumulative since the device was mapped by this daemon;
 * rates are averages over the last 10 whole seconds. Per-command maps are keyed {@code read},
 * {@code write}, {@code flush}, {@code trim}, {@code write-zeroes}, {@code block-status},
 * {@code cache} and {@code other} (JMX shows them as tables of key and value).
 */
public interface DeviceMXBean {
    /** The image spec as given to map ({@code pool/ns/image@snap}, {@code file:PATH}). */
    String getImage();

    /** {@code /dev/nbdN}, or "" while not yet attached. */
    String getDevice();

    /** {@code mapping}, {@code mapped}, {@code reopening}, {@code gave-up} or {@code unmapping} ({@link DeviceState}). */
    String getState();

    /** The image's size as last seen. */
    long getSizeBytes();

    /** Requests dispatched to the image and not yet answered, every connection together. */
    long getInFlight();

    /** READ replies per second, over the last 10 whole seconds. */
    double getReadIops();

    /** WRITE replies per second, over the last 10 whole seconds (not TRIM or WRITE_ZEROES). */
    double getWriteIops();

    /** Bytes of successful READs per second, over the last 10 whole seconds. */
    double getReadBytesPerSecond();

    /** Bytes of successful WRITEs per second, over the last 10 whole seconds. */
    double getWriteBytesPerSecond();

    /** Replies by command, errors included. */
    Map<String, Long> getRequests();

    /** Lengths of successful requests by command (for block-status and cache, the range asked about). */
    Map<String, Long> getBytes();

    /** Error replies by command. */
    Map<String, Long> getErrors();

    /**
     * Error replies by errno name ({@code EIO}, {@code ETIMEDOUT}, {@code ESHUTDOWN} for a
     * blocklisted client), as the image reported them: the kernel sees fewer distinct values.
     */
    Map<String, Long> getErrorsByErrno();

    /** Median latency, µs, from dispatch to the image's answer (within 3.1 %). */
    long getLatencyP50Micros();

    /** 90th percentile latency, µs. */
    long getLatencyP90Micros();

    /** 99th percentile latency, µs. */
    long getLatencyP99Micros();

    /** 99.9th percentile latency, µs. */
    long getLatencyP999Micros();

    /** How many times the image was reopened after its handle was lost. */
    long getSupervisorRestarts();

    /** The last loss of the image's handle (time and cause), or "" when there was none. */
    String getLastError();
}
