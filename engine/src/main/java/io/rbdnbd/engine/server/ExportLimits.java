package io.rbdnbd.engine.server;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;

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

    private static void require(Config c, String key, boolean ok, String message) {
        if (!ok) {
            throw new ConfigException.BadValue(c.getValue(key).origin(), "rbdnbd.engine.export." + key, message);
        }
    }
}
