package io.rbdnbd.engine.server;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/**
 * What the handshake does about NBD_OPT_STARTTLS: {@code OFF} answers it NBD_REP_ERR_UNSUP;
 * {@code ON} upgrades when the client asks; {@code REQUIRE} also refuses every option but
 * STARTTLS and ABORT until then (NBD_REP_ERR_TLS_REQD; NBD_OPT_EXPORT_NAME, which has no error
 * reply, closes the connection), so no export is named, listed or served in plaintext.
 */
public record TlsPolicy(Mode mode, Upgrade upgrade) {
    public static final TlsPolicy OFF = new TlsPolicy(Mode.OFF, null);

    public enum Mode { OFF, ON, REQUIRE }

    /** Runs the TLS handshake on the connection; returns the streams that now go through TLS. */
    public interface Upgrade {
        Streams start() throws IOException;
    }

    public record Streams(InputStream in, OutputStream out) {
    }

    public TlsPolicy {
        if (mode != Mode.OFF && upgrade == null) {
            throw new IllegalArgumentException("TLS " + mode + " needs credentials");
        }
    }
}
