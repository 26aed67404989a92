package io.rbdnbd.engine.protocol;

import org.apache.pekko.util.ByteString;

/**
 * One transmission-phase request as framed by {@link RequestDecoder}. {@code payload} is the WRITE
 * data as a slice of the received bytes (not copied); empty for every other command.
 * {@code rejectErrno} is non-zero when the decoder already knows the request is invalid (unknown
 * command, flag not allowed for the command, length over the limit): it is answered with that
 * error without touching the backend, and the connection carries on.
 */
public record NbdRequest(int type, int flags, long handle, long offset, long length, ByteString payload,
                         int rejectErrno) {

    public boolean hasFlag(int flag) {
        return (flags & flag) != 0;
    }

    /** Bytes this request holds or will hold in memory while in flight (payload or read buffer). */
    public long weight() {
        return weight(type, length, rejectErrno);
    }

    /**
     * Bytes a request with this header holds in memory: a WRITE's payload is read whether or not the
     * request is valid; a READ's buffer exists only when it reaches the backend.
     */
    public static long weight(int type, long length, int rejectErrno) {
        return switch (type) {
            case Nbd.CMD_WRITE -> length;
            case Nbd.CMD_READ -> rejectErrno == 0 ? length : 0;
            default -> 0;
        };
    }

    @Override
    public String toString() {
        return Nbd.commandName(type) + "(handle=" + Long.toHexString(handle) + " offset=" + offset + " length="
                + length + " flags=" + flags + (rejectErrno != 0 ? " reject=" + rejectErrno : "") + ")";
    }
}
