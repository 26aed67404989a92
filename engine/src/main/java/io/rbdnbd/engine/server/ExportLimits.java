package io.rbdnbd.engine.server;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import io.rbdnbd.engine.stream.EngineSettings;

import java.time.Duration;

/** The {@code rbdnbd.engine.export} section: what one client may hold of an NBD export server. */
public record ExportLimits(Duration handshakeTimeout, int maxConnections, int maxConnectionsPerExport,
                           Duration idleTimeout) {

    public static ExportLimits from(Config root) {
        Config c = root.getConfig("rbdnbd.engine.export");
        ExportLimits l = new ExportLimits(c.getDuration("handshake-timeout"), c.getInt("max-connections"),
                c.getInt("max-connections-per-export"), c.getDuration("idle-timeout"));
        require(c, "handshake-timeout", !l.handshakeTimeout.isNegative() && !l.handshakeTimeout.isZero(),
                "must be positive");
        require(c, "max-connections", l.maxConnections >= 1, "must be at least 1");
        require(c, "max-connections-per-export", l.maxConnectionsPerExport >= 1, "must be at least 1");
        require(c, "idle-timeout", !l.idleTimeout.isNegative(), "must not be negative");
        return l;
    }

    /** Direct memory every export connection of this process together may hold: a read and a write buffer each. */
    public long directBytes(EngineSettings settings) {
        return 2L * settings.socketReadBytes() * maxConnections;
    }

    /**
     * Refuses settings whose direct memory does not fit the JVM's limit, naming both, so that the
     * limit is met at start rather than by the connection that finds the memory gone.
     *
     * @param maxDirectMemory the JVM's -XX:MaxDirectMemorySize
     * @throws IllegalStateException saying what to change
     */
    public void requireFits(EngineSettings settings, long maxDirectMemory) {
        long need = directBytes(settings);
        if (need > maxDirectMemory) {
            throw new IllegalStateException(String.format("rbdnbd.engine.export.max-connections (%d) x 2 buffers of"
                    + " rbdnbd.engine.socket-read-bytes (%d KiB) need %d MiB of direct memory, more than the JVM's"
                    + " -XX:MaxDirectMemorySize (%d MiB): lower those settings or raise it in RBDNBD_JAVA_OPTS",
                    maxConnections, settings.socketReadBytes() >> 10, need >> 20, maxDirectMemory >> 20));
        }
    }

    /** This JVM's -XX:MaxDirectMemorySize (when unset, the JDK's default: the maximum heap). */
    public static long maxDirectMemory() {
        String v = java.lang.management.ManagementFactory.getPlatformMXBean(
                com.sun.management.HotSpotDiagnosticMXBean.class).getVMOption("MaxDirectMemorySize").getValue();
        long n = Long.parseLong(v);
        return n > 0 ? n : Runtime.getRuntime().maxMemory();
    }

    private static void require(Config c, String key, boolean ok, String message) {
        if (!ok) {
            throw new ConfigException.BadValue(c.getValue(key).origin(), "rbdnbd.engine.export." + key, message);
        }
    }
}
