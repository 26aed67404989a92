package io.rbdnbd.engine.backend;

import io.rbdnbd.nativeio.Errno;

import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;

/**
 * A backend operation failed; {@link #errno()} is what the NBD client is told.
 * {@link #handleLost()} says the backend's handle on the image is unusable from now on (the
 * client was blocklisted, the exclusive lock was taken away, the cluster connection is gone): no
 * later call can succeed until the image is opened again.
 */
public final class BackendException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final int errno;
    private final boolean handleLost;

    public BackendException(int errno, String message) {
        this(errno, message, null, false);
    }

    public BackendException(int errno, String message, Throwable cause) {
        this(errno, message, cause, false);
    }

    private BackendException(int errno, String message, Throwable cause, boolean handleLost) {
        super(withErrno(message, errno), cause);
        this.errno = errno;
        this.handleLost = handleLost;
    }

    /** A failure after which the handle is unusable and the image must be reopened. */
    public static BackendException handleLost(int errno, String message) {
        return new BackendException(errno, message, null, true);
    }

    /**
     * The failure itself under the wrappers a future adds ({@code CompletionException} from
     * {@code join} and the stages after a failed one, {@code ExecutionException} from {@code get}).
     */
    public static Throwable unwrap(Throwable t) {
        Throwable c = t;
        while ((c instanceof CompletionException || c instanceof ExecutionException) && c.getCause() != null) {
            c = c.getCause();
        }
        return c;
    }

    /** The message, ending with the errno's name unless it already names it. */
    private static String withErrno(String message, int errno) {
        String name = Errno.name(errno);
        return message.contains(name) ? message : message + ": " + name;
    }

    public int errno() {
        return errno;
    }

    public boolean handleLost() {
        return handleLost;
    }
}
