package io.rbdnbd.engine.protocol;

/** A peer broke the protocol in a way that leaves no way to carry on with the connection. */
public final class ProtocolException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public ProtocolException(String message) {
        super(message);
    }
}
