package io.rbdnbd.engine.stream;

import org.apache.pekko.util.ByteString;

/**
 * Encoded replies on their way to the socket, and the in-flight bytes they hold until written:
 * a READ's data stays counted against the budget until {@link #sent()}, so replies a client does
 * not read stop the reading of its requests rather than pile up.
 */
public record Outbound(ByteString bytes, long weight, InFlightBudget.Account account) {

    /** Several replies written together. */
    public Outbound concat(Outbound more) {
        return new Outbound(bytes.concat(more.bytes), weight + more.weight, account);
    }

    /** The bytes are written: gives back what they held, and returns them. */
    public ByteString sent() {
        account.release(weight);
        return bytes;
    }
}
