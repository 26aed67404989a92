package io.rbdnbd.cli;

/** The command was understood but could not be carried out; the message says why. */
final class CommandFailedException extends Exception {
    private static final long serialVersionUID = 1L;

    CommandFailedException(String message, Throwable cause) {
        super(message, cause);
    }
}
