package io.rbdnbd.engine.server;

import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.protocol.Nbd;

/** What the export server offers: one backend under a name, writable or not. */
public record Export(String name, BlockBackend backend, boolean readOnly) {

    public boolean effectivelyReadOnly() {
        return readOnly || backend.readOnly();
    }

    /**
     * Transmission flags for network clients. Flush is backend-wide, so a flush on any connection
     * covers writes answered on every other: multi-conn is safe.
     */
    public int transmissionFlags() {
        int flags = Nbd.FLAG_HAS_FLAGS | Nbd.FLAG_SEND_FLUSH | Nbd.FLAG_SEND_FUA | Nbd.FLAG_SEND_DF
                | Nbd.FLAG_CAN_MULTI_CONN | Nbd.FLAG_SEND_CACHE;
        return effectivelyReadOnly()
                ? flags | Nbd.FLAG_READ_ONLY
                : flags | Nbd.FLAG_SEND_TRIM | Nbd.FLAG_SEND_WRITE_ZEROES;
    }
}
