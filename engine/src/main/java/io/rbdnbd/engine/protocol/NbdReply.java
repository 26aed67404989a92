package io.rbdnbd.engine.protocol;

import io.rbdnbd.engine.backend.Extent;
import org.apache.pekko.util.ByteString;

import java.util.List;

/**
 * The answer to one {@link NbdRequest}: an error (0 for success), the data of a successful READ,
 * or the extents of a successful BLOCK_STATUS. {@code weight} is the request's in-flight weight,
 * released once the reply is encoded.
 */
public record NbdReply(int command, long handle, int error, long offset, ByteString data, List<Extent> extents,
                       String message, long weight) {

    public static NbdReply ok(NbdRequest r) {
        return new NbdReply(r.type(), r.handle(), 0, r.offset(), ByteString.emptyByteString(), List.of(), "",
                r.weight());
    }

    public static NbdReply data(NbdRequest r, ByteString data) {
        return new NbdReply(r.type(), r.handle(), 0, r.offset(), data, List.of(), "", r.weight());
    }

    public static NbdReply extents(NbdRequest r, List<Extent> extents) {
        return new NbdReply(r.type(), r.handle(), 0, r.offset(), ByteString.emptyByteString(), extents, "",
                r.weight());
    }

    public static NbdReply error(NbdRequest r, int errno, String message) {
        return new NbdReply(r.type(), r.handle(), errno, r.offset(), ByteString.emptyByteString(), List.of(),
                message, r.weight());
    }
}
