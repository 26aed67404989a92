package io.rbdnbd.nativeio;

import java.io.IOException;

/** A failed system call: carries the errno and what was being attempted. */
public final class NativeException extends IOException {
    private static final long serialVersionUID = 1L;
    private final int errno;

    public NativeException(String attempted, int errno) {
        super(attempted + ": " + Errno.describe(errno));
        this.errno = errno;
    }

    public int errno() {
        return errno;
    }
}
