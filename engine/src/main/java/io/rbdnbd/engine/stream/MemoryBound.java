package io.rbdnbd.engine.stream;

import java.util.List;

/**
 * The most heap and direct memory a process needs for what its configuration lets clients and the
 * kernel hold (reference.conf, "Memory"). The daemon that {@code map} starts gets its JVM sized
 * from it; {@code serve} and the daemon run in the foreground check it at start, so a bound that
 * does not fit is found then, and not by the request that finds the memory gone.
 *
 * @param heapBytes   live heap at most: in-flight bytes, unframed socket bytes, the fixed part
 * @param directBytes direct buffers at most: a read and a write buffer per connection
 * @param terms       how the two were reached, for the error that says what to change
 */
public record MemoryBound(long heapBytes, long directBytes, String terms) {

    /** Unframed bytes one connection holds on the heap: 2 chunks read ahead, one being read, one framed. */
    private static long heapPerConnection(EngineSettings s) {
        return 4L * s.socketReadBytes();
    }

    private static long directPerConnection(EngineSettings s) {
        return 2L * s.socketReadBytes();
    }

    /** The file backend's threads keep a direct buffer each (used or not: the bound is what may be). */
    private static long fileIoDirect(EngineSettings s) {
        return s.fileIoThreads() * io.rbdnbd.engine.backend.FileBackend.DIRECT_BYTES_PER_THREAD;
    }

    /** One export with at most {@code maxConnections} clients, its image holding {@code imageHeapBytes} of heap (memory:). */
    public static MemoryBound export(EngineSettings s, int maxConnections, long imageHeapBytes) {
        return new MemoryBound(
                s.heapBase() + s.maxInFlightBytes() + maxConnections * heapPerConnection(s) + imageHeapBytes,
                maxConnections * directPerConnection(s) + fileIoDirect(s),
                String.format("heap: rbdnbd.engine.heap-base %d MiB + max-in-flight-bytes %d MiB + export.max-connections"
                                + " %d x 4 x socket-read-bytes %d KiB%s; direct: %d x 2 x %d KiB + %d file-io threads x 1 MiB",
                        mib(s.heapBase()), mib(s.maxInFlightBytes()), maxConnections, s.socketReadBytes() >> 10,
                        imageHeapBytes > 0 ? " + the memory image " + mib(imageHeapBytes) + " MiB" : "",
                        maxConnections, s.socketReadBytes() >> 10, s.fileIoThreads()));
    }

    /**
     * Kernel devices of one daemon: at most {@code maxDevices}, {@code socketsPerDevice} connections
     * each, all of them holding at most {@code sharedInFlightBytes} in flight together.
     */
    public static MemoryBound kernelDevices(EngineSettings s, int maxDevices, int socketsPerDevice,
                                            long sharedInFlightBytes) {
        long connections = (long) maxDevices * socketsPerDevice;
        return new MemoryBound(
                s.heapBase() + sharedInFlightBytes + connections * heapPerConnection(s),
                connections * FdConnection.DIRECT_BYTES + fileIoDirect(s),
                String.format("heap: rbdnbd.engine.heap-base %d MiB + rbdnbd.kernel.max-in-flight-bytes %d MiB"
                                + " + rbdnbd.kernel.max-devices %d x %d sockets x 4 x socket-read-bytes %d KiB;"
                                + " direct: %d sockets x %d KiB + %d file-io threads x 1 MiB",
                        mib(s.heapBase()), mib(sharedInFlightBytes), maxDevices, socketsPerDevice,
                        s.socketReadBytes() >> 10, connections, FdConnection.DIRECT_BYTES >> 10, s.fileIoThreads()));
    }

    /**
     * The JVM options that hold this bound: the heap a quarter larger than the live bytes (room for
     * the collector to work beside them), direct memory as counted.
     */
    public List<String> jvmOptions() {
        return List.of("-Xmx" + (mib(heapBytes + heapBytes / 4) + 1) + "m",
                "-XX:MaxDirectMemorySize=" + (mib(directBytes) + 1) + "m");
    }

    /**
     * Refuses a JVM whose heap or direct memory limit is below this bound, naming the settings and
     * the options that would fit.
     *
     * @throws IllegalStateException saying what to change
     */
    public void requireFits(long maxHeap, long maxDirect) {
        if (heapBytes > maxHeap || directBytes > maxDirect) {
            throw new IllegalStateException(String.format("the configuration lets clients hold %d MiB of heap and %d MiB"
                            + " of direct memory (%s), more than this JVM's %d MiB heap and %d MiB direct: lower those"
                            + " settings, or give RBDNBD_JAVA_OPTS=\"%s\"", mib(heapBytes), mib(directBytes), terms,
                    mib(maxHeap), mib(maxDirect), String.join(" ", jvmOptions())));
        }
    }

    /** This JVM's usable heap and -XX:MaxDirectMemorySize (when unset, the JDK's default: the maximum heap). */
    public void requireFitsThisJvm() {
        requireFits(Runtime.getRuntime().maxMemory(), maxDirectMemory());
    }

    static long maxDirectMemory() {
        String v = java.lang.management.ManagementFactory.getPlatformMXBean(
                com.sun.management.HotSpotDiagnosticMXBean.class).getVMOption("MaxDirectMemorySize").getValue();
        long n = Long.parseLong(v);
        return n > 0 ? n : Runtime.getRuntime().maxMemory();
    }

    private static long mib(long bytes) {
        return bytes >> 20;
    }
}
