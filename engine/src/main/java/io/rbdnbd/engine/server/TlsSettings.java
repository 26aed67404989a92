package io.rbdnbd.engine.server;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Locale;

/** The {@code rbdnbd.engine.export.tls} section: TLS for NBD exports (documented in reference.conf). */
public record TlsSettings(TlsPolicy.Mode mode, String certs, boolean verifyPeer) {
    public static final TlsSettings OFF = new TlsSettings(TlsPolicy.Mode.OFF, "", false);

    public static TlsSettings from(Config root) {
        Config c = root.getConfig("rbdnbd.engine.export.tls");
        String m = c.getString("mode");
        TlsPolicy.Mode mode;
        try {
            mode = TlsPolicy.Mode.valueOf(m.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new ConfigException.BadValue(c.getValue("mode").origin(), "rbdnbd.engine.export.tls.mode",
                    "must be off, on or require, is '" + m + "'");
        }
        TlsSettings t = new TlsSettings(mode, c.getString("certs"), c.getBoolean("verify-peer"));
        if (mode != TlsPolicy.Mode.OFF && t.certs.isEmpty()) {
            throw new ConfigException.BadValue(c.getValue("certs").origin(), "rbdnbd.engine.export.tls.certs",
                    "TLS " + m + " needs the directory of the export's certificate and key (--tls-certs DIR)");
        }
        return t;
    }

    /** The credentials, loaded now (null when off), so that a broken directory stops the start. */
    public TlsCredentials credentials() throws IOException {
        return mode == TlsPolicy.Mode.OFF ? null : TlsCredentials.load(Path.of(certs), verifyPeer);
    }
}
