package io.rbdnbd.engine.backend;

import io.rbdnbd.nativeio.Errno;

/** A backend operation failed; {@link #errno()} is what the NBD client is told. */
public final class BackendException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final int errno;

    public BackendException(int errno, String message) {
        super(withErrno(message, errno));
        this.errno = errno;
    }

    public BackendException(int errno, String message, Throwable cause) {
        super(withErrno(message, errno), cause);
        this.errno = errno;
    }

    /** The message, ending with the errno's name unless it already names it. */
    private static String withErrno(String message, int errno) {
        String name = Errno.name(errno);
        return message.contains(name) ? message : message + ": " + name;
    }

    public int errno() {
        return errno;
    }
}
