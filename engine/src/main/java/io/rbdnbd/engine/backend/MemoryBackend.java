package io.rbdnbd.engine.backend;

import org.apache.pekko.util.ByteString;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * A sparse image in the JVM heap: 64 KiB chunks allocated on first write, found through a
 * two-level table so a 1 TiB image costs a few KiB until it is written. Trim and write-zeroes
 * drop whole chunks. Operations are memory copies, so they complete before returning.
 *
 * <p>Concurrent requests on different byte ranges never interfere (chunks are allocated with
 * compare-and-set); overlapping concurrent requests have no defined order, as in NBD itself.
 */
public final class MemoryBackend implements BlockBackend {
    static final int CHUNK_SHIFT = 16;
    static final int CHUNK = 1 << CHUNK_SHIFT;
    private static final int LEAF_SHIFT = 12; // 4096 chunks (256 MiB) per leaf table
    private static final int LEAF = 1 << LEAF_SHIFT;

    /** Heap promised to the memory images open in this process: their whole sizes. */
    private static final AtomicLong PROMISED = new AtomicLong();

    private final long size;
    private final AtomicReferenceArray<AtomicReferenceArray<byte[]>> table;
    /** What this image promised from {@link #PROMISED}, given back once on close. */
    private final AtomicLong promise = new AtomicLong();

    public MemoryBackend(long size) {
        if (size < 0) {
            throw new IllegalArgumentException("size must not be negative: " + size);
        }
        this.size = size;
        long chunks = (size + CHUNK - 1) >>> CHUNK_SHIFT;
        long leaves = (chunks + LEAF - 1) >>> LEAF_SHIFT;
        if (leaves > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("memory image too large: " + size);
        }
        this.table = new AtomicReferenceArray<>((int) leaves);
    }

    /**
     * A memory image whose whole size is promised from this JVM's heap, so that filling it can
     * never take the heap that the other devices and exports of the process share.
     *
     * @throws IllegalArgumentException when it is larger than the machine's RAM, or when it and the
     *                                  memory images already open need more than three quarters of the heap
     */
    public static MemoryBackend promised(long size, long maxHeap, long machineRam) {
        requireFitsMachine(size, machineRam);
        long budget = maxHeap / 4 * 3;
        while (true) {
            long p = PROMISED.get();
            if (p + size > budget) {
                throw new IllegalArgumentException(String.format("a memory image of %d MiB does not fit this JVM's heap"
                                + " (%d MiB, of which memory images may take three quarters; %d MiB are promised to"
                                + " those open): give the JVM more with RBDNBD_JAVA_OPTS=-Xmx...",
                        size >> 20, maxHeap >> 20, p >> 20));
            }
            if (PROMISED.compareAndSet(p, p + size)) {
                break;
            }
        }
        MemoryBackend b = new MemoryBackend(size);
        b.promise.set(size);
        return b;
    }

    /** @throws IllegalArgumentException when a memory image of {@code size} is larger than {@code machineRam} (0: unknown) */
    public static void requireFitsMachine(long size, long machineRam) {
        if (machineRam > 0 && size > machineRam) {
            throw new IllegalArgumentException(String.format("a memory image of %d MiB is larger than this machine's"
                    + " RAM (%d MiB)", size >> 20, machineRam >> 20));
        }
    }

    /** This machine's RAM in bytes, 0 when the JVM cannot tell. */
    public static long machineRam() {
        java.lang.management.OperatingSystemMXBean os = java.lang.management.ManagementFactory.getOperatingSystemMXBean();
        return os instanceof com.sun.management.OperatingSystemMXBean sun ? sun.getTotalMemorySize() : 0;
    }

    @Override
    public long size() {
        return size;
    }

    /** A memory image never changes size. */
    @Override
    public CompletionStage<Long> refreshSize() {
        return CompletableFuture.completedFuture(size);
    }

    @Override
    public boolean readOnly() {
        return false;
    }

    @Override
    public String describe() {
        return "memory:" + size;
    }

    /** Bytes of image data held (allocated chunks), for tests and statistics. */
    public long allocatedBytes() {
        long n = 0;
        for (int i = 0; i < table.length(); i++) {
            AtomicReferenceArray<byte[]> leaf = table.get(i);
            if (leaf != null) {
                for (int j = 0; j < LEAF; j++) {
                    if (leaf.get(j) != null) {
                        n += CHUNK;
                    }
                }
            }
        }
        return n;
    }

    private byte[] chunk(long index) {
        AtomicReferenceArray<byte[]> leaf = table.get((int) (index >>> LEAF_SHIFT));
        return leaf == null ? null : leaf.get((int) (index & (LEAF - 1)));
    }

    private byte[] chunkForWrite(long index) {
        int li = (int) (index >>> LEAF_SHIFT);
        AtomicReferenceArray<byte[]> leaf = table.get(li);
        if (leaf == null) {
            table.compareAndSet(li, null, new AtomicReferenceArray<>(LEAF));
            leaf = table.get(li);
        }
        int ci = (int) (index & (LEAF - 1));
        byte[] c = leaf.get(ci);
        if (c == null) {
            leaf.compareAndSet(ci, null, new byte[CHUNK]);
            c = leaf.get(ci);
        }
        return c;
    }

    private void dropChunk(long index) {
        AtomicReferenceArray<byte[]> leaf = table.get((int) (index >>> LEAF_SHIFT));
        if (leaf != null) {
            leaf.set((int) (index & (LEAF - 1)), null);
        }
    }

    @Override
    public CompletionStage<ByteString> read(long offset, int length) {
        byte[] out = new byte[length];
        int done = 0;
        while (done < length) {
            long pos = offset + done;
            int within = (int) (pos & (CHUNK - 1));
            int n = Math.min(length - done, CHUNK - within);
            byte[] c = chunk(pos >>> CHUNK_SHIFT);
            if (c != null) {
                System.arraycopy(c, within, out, done, n);
            }
            done += n;
        }
        return CompletableFuture.completedFuture(ByteString.fromArrayUnsafe(out));
    }

    @Override
    public CompletionStage<Void> write(long offset, ByteString data, boolean fua) {
        int length = data.size();
        int done = 0;
        while (done < length) {
            long pos = offset + done;
            int within = (int) (pos & (CHUNK - 1));
            int n = Math.min(length - done, CHUNK - within);
            byte[] c = chunkForWrite(pos >>> CHUNK_SHIFT);
            data.slice(done, done + n).copyToBuffer(ByteBuffer.wrap(c, within, n));
            done += n;
        }
        return CompletableFuture.completedFuture(null);
    }

    @Override
    public CompletionStage<Void> flush() {
        return CompletableFuture.completedFuture(null);
    }

    @Override
    public CompletionStage<Void> trim(long offset, long length, boolean fua) {
        zero(offset, length, false);
        return CompletableFuture.completedFuture(null);
    }

    @Override
    public CompletionStage<Void> writeZeroes(long offset, long length, boolean noHole, boolean fua) {
        zero(offset, length, noHole);
        return CompletableFuture.completedFuture(null);
    }

    /** Whole chunks are dropped (or, with noHole, allocated and cleared); partial ones cleared. */
    private void zero(long offset, long length, boolean allocate) {
        long end = offset + length;
        long pos = offset;
        while (pos < end) {
            long index = pos >>> CHUNK_SHIFT;
            int within = (int) (pos & (CHUNK - 1));
            int n = (int) Math.min(end - pos, CHUNK - within);
            if (n == CHUNK && !allocate) {
                dropChunk(index);
            } else {
                byte[] c = allocate ? chunkForWrite(index) : chunk(index);
                if (c != null) {
                    java.util.Arrays.fill(c, within, within + n, (byte) 0);
                }
            }
            pos += n;
        }
    }

    @Override
    public CompletionStage<List<Extent>> blockStatus(long offset, long length) {
        List<Extent> extents = new ArrayList<>();
        long end = offset + length;
        long pos = offset;
        int runFlags = -1;
        long runStart = offset;
        while (pos < end) {
            int within = (int) (pos & (CHUNK - 1));
            long n = Math.min(end - pos, CHUNK - within);
            int flags = chunk(pos >>> CHUNK_SHIFT) == null ? Extent.HOLE_ZERO : Extent.DATA;
            if (flags != runFlags) {
                if (runFlags >= 0) {
                    extents.add(new Extent(pos - runStart, runFlags));
                }
                runFlags = flags;
                runStart = pos;
            }
            pos += n;
        }
        if (runFlags >= 0) {
            extents.add(new Extent(end - runStart, runFlags));
        }
        return CompletableFuture.completedFuture(extents);
    }

    @Override
    public CompletionStage<Void> cache(long offset, long length) {
        return CompletableFuture.completedFuture(null);
    }

    @Override
    public CompletionStage<Void> close() {
        for (int i = 0; i < table.length(); i++) {
            table.set(i, null);
        }
        PROMISED.addAndGet(-promise.getAndSet(0));
        return CompletableFuture.completedFuture(null);
    }
}
