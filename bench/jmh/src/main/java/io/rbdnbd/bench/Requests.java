package io.rbdnbd.bench;

import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.protocol.NbdRequest;
import org.apache.pekko.util.ByteString;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/** Request batches as a client puts them on the wire, for the benchmarks. */
final class Requests {
    static final int BLOCK = 4096;

    private Requests() {
    }

    /**
     * {@code pairs} 4 KiB WRITEs and as many 4 KiB READs, alternating, at random 4 KiB-aligned
     * offsets below {@code imageSize} (fixed seed), encoded as one byte stream and cut into chunks
     * of {@code chunkBytes}, as the socket reader hands them over (chunks split requests anywhere).
     */
    static List<ByteString> wire(int pairs, long imageSize, int chunkBytes, long seed) {
        byte[] all = new byte[pairs * (2 * Nbd.REQUEST_HEADER_SIZE + BLOCK)];
        ByteBuffer b = ByteBuffer.wrap(all);
        Random rnd = new Random(seed);
        byte[] payload = new byte[BLOCK];
        rnd.nextBytes(payload);
        long blocks = imageSize / BLOCK;
        long handle = 1;
        for (int i = 0; i < pairs; i++) {
            header(b, Nbd.CMD_WRITE, handle++, (long) (rnd.nextDouble() * blocks) * BLOCK, BLOCK).put(payload);
            header(b, Nbd.CMD_READ, handle++, (long) (rnd.nextDouble() * blocks) * BLOCK, BLOCK);
        }
        List<ByteString> chunks = new ArrayList<>();
        for (int off = 0; off < all.length; off += chunkBytes) {
            int n = Math.min(chunkBytes, all.length - off);
            byte[] c = new byte[n]; // a fresh array per chunk, as each socket read returns
            System.arraycopy(all, off, c, 0, n);
            chunks.add(ByteString.fromArrayUnsafe(c));
        }
        return chunks;
    }

    /** The same batch as decoded requests (WRITE payloads are their own 4 KiB arrays). */
    static List<NbdRequest> decoded(int pairs, long imageSize, long seed) {
        List<NbdRequest> out = new ArrayList<>(2 * pairs);
        Random rnd = new Random(seed);
        byte[] payload = new byte[BLOCK];
        rnd.nextBytes(payload);
        ByteString data = ByteString.fromArray(payload);
        long blocks = imageSize / BLOCK;
        long handle = 1;
        for (int i = 0; i < pairs; i++) {
            out.add(new NbdRequest(Nbd.CMD_WRITE, 0, handle++, (long) (rnd.nextDouble() * blocks) * BLOCK, BLOCK,
                    data, 0));
            out.add(new NbdRequest(Nbd.CMD_READ, 0, handle++, (long) (rnd.nextDouble() * blocks) * BLOCK, BLOCK,
                    ByteString.emptyByteString(), 0));
        }
        return out;
    }

    private static ByteBuffer header(ByteBuffer b, int type, long handle, long offset, int length) {
        return b.putInt(Nbd.REQUEST_MAGIC).putShort((short) 0).putShort((short) type).putLong(handle).putLong(offset)
                .putInt(length);
    }
}
