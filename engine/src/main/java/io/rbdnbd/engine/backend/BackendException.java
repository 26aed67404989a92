package io.rbdnbd.engine.backend;

import io.rbdnbd.nativeio.Errno;

/** A backend operation failed; {@link #errno()} is what the NBD client is told. */
public final class BackendException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final int errno;

    public BackendException(int errno, String message) {
        super(message + ": " + Errno.name(errno));
        this.errno = errno;
    }

    public BackendException(int errno, String message, Throwable cause) {
        super(message + ": " + Errno.name(errno), cause);
        this.errno = errno;
    }

    public int errno() {
        return errno;
    }
}
