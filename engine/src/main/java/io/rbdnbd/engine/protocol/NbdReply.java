package io.rbdnbd.engine.protocol;

import org.apache.pekko.util.ByteString;

import java.util.List;

/**
 * The answer to one {@link NbdRequest}: an error (0 for success), the data of a successful READ,
 * or the block descriptors of a successful BLOCK_STATUS. {@code weight} is the request's in-flight weight,
 * released once the reply is encoded.
 */
public record NbdReply(int command, long handle, int error, long offset, ByteString data, List<BlockDescriptor> extents,
                       String message, long weight) {

    public static NbdReply ok(NbdRequest r) {
        return new NbdReply(r.type(), r.handle(), 0, r.offset(), ByteString.emptyByteString(), List.of(), "",
                r.weight());
    }

    public static NbdReply data(NbdRequest r, ByteString data) {
        return new NbdReply(r.type(), r.handle(), 0, r.offset(), data, List.of(), "", r.weight());
    }

    public static NbdReply extents(NbdRequest r, List<BlockDescriptor> extents) {
        return new NbdReply(r.type(), r.handle(), 0, r.offset(), ByteString.emptyByteString(), extents, "",
                r.weight());
    }

    public static NbdReply error(NbdRequest r, int errno, String message) {
        return new NbdReply(r.type(), r.handle(), errno, r.offset(), ByteString.emptyByteString(), List.of(),
                message, r.weight());
    }

    /**
     * One run of a BLOCK_STATUS reply: {@code length} bytes (at most 2^32 - 1, the wire's field)
     * in the state {@code flags} of the base:allocation context (bit 0 hole, bit 1 zero).
     */
    public record BlockDescriptor(long length, int flags) {
        public BlockDescriptor {
            if (length <= 0 || length > 0xffff_ffffL) {
                throw new IllegalArgumentException("block descriptor length out of range: " + length);
            }
        }
    }
}
