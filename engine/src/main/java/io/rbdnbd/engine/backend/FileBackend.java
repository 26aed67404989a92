package io.rbdnbd.engine.backend;

import io.rbdnbd.nativeio.Errno;
import io.rbdnbd.nativeio.LibC;
import io.rbdnbd.nativeio.NativeException;
import org.apache.pekko.util.ByteString;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;

/**
 * A sparse file (or block device) as the image. Positional I/O (pread/pwrite) runs on the given
 * executor, never the caller's thread. Trim and write-zeroes punch holes, block status comes from
 * SEEK_DATA/SEEK_HOLE, and FUA and flush reach the disk with fdatasync.
 */
public final class FileBackend implements BlockBackend {
    private static final Logger log = LoggerFactory.getLogger(FileBackend.class);
    /** Data moves through a per-thread direct buffer of this size, in pieces. */
    private static final int IO_PIECE = 1 << 20;
    /** Direct memory each file-io thread holds (its piece buffer, kept for the thread's life). */
    public static final long DIRECT_BYTES_PER_THREAD = IO_PIECE;
    private static final ThreadLocal<ByteBuffer> PIECE = ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect(IO_PIECE));
    /** Block status answers at most this many extents per request; the client asks again. */
    private static final int MAX_EXTENTS = 1024;

    private final Path path;
    private final int fd;
    private volatile long size;
    private final boolean readOnly;
    private final Executor executor;
    private final java.util.Set<Integer> unsupportedFallocateModes = java.util.concurrent.ConcurrentHashMap.newKeySet();

    private FileBackend(Path path, int fd, long size, boolean readOnly, Executor executor) {
        this.path = path;
        this.fd = fd;
        this.size = size;
        this.readOnly = readOnly;
        this.executor = executor;
    }

    /**
     * Opens {@code path}. When it does not exist and {@code createSize >= 0}, creates it sparse at
     * that size; an existing file keeps its own size.
     */
    public static FileBackend open(Path path, long createSize, boolean readOnly, Executor executor)
            throws NativeException {
        int flags = readOnly ? LibC.O_RDONLY : LibC.O_RDWR;
        boolean create = createSize >= 0 && !Files.exists(path);
        if (create && readOnly) {
            throw new NativeException("open " + path + " read-only (it does not exist, and --size creates only writable images)", Errno.ENOENT);
        }
        int fd = LibC.openFile(path.toString(), create ? flags | LibC.O_CREAT | LibC.O_EXCL : flags, 0644);
        try {
            if (create) {
                LibC.ftruncateFd(fd, createSize);
                log.info("created sparse image {} of {} bytes", path, createSize);
            }
            long size = LibC.lseekFd(fd, 0, LibC.SEEK_END);
            if (createSize >= 0 && !create && size != createSize) {
                log.warn("{} exists with {} bytes; keeping its size, not the {} asked for", path, size, createSize);
            }
            return new FileBackend(path, fd, size, readOnly, executor);
        } catch (NativeException e) {
            LibC.closeFd(fd);
            throw e;
        }
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public CompletionStage<Long> refreshSize() {
        return submit(() -> {
            size = LibC.lseekFd(fd, 0, LibC.SEEK_END);
            return size;
        });
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public String describe() {
        return "file:" + path;
    }

    @FunctionalInterface
    private interface IoCall<T> {
        T run() throws NativeException;
    }

    private <T> CompletionStage<T> submit(IoCall<T> call) {
        return CompletableFuture.supplyAsync(() -> {
            try {
                return call.run();
            } catch (NativeException e) {
                throw new CompletionException(new BackendException(e.errno(), e.getMessage(), e));
            }
        }, executor);
    }

    @Override
    public CompletionStage<ByteString> read(long offset, int length) {
        return submit(() -> {
            byte[] out = new byte[length];
            ByteBuffer piece = PIECE.get();
            for (int done = 0; done < length; ) {
                int n = Math.min(IO_PIECE, length - done);
                piece.clear().limit(n);
                LibC.preadFully(fd, piece, offset + done);
                piece.flip().get(out, done, n);
                done += n;
            }
            return ByteString.fromArrayUnsafe(out);
        });
    }

    @Override
    public CompletionStage<Void> write(long offset, ByteString data, boolean fua) {
        return submit(() -> {
            ByteBuffer piece = PIECE.get();
            int length = data.size();
            for (int done = 0; done < length; ) {
                int n = Math.min(IO_PIECE, length - done);
                piece.clear();
                data.slice(done, done + n).copyToBuffer(piece);
                piece.flip();
                LibC.pwriteFully(fd, piece, offset + done);
                done += n;
            }
            if (fua) {
                LibC.fdatasyncFd(fd);
            }
            return null;
        });
    }

    @Override
    public CompletionStage<Void> flush() {
        return submit(() -> {
            LibC.fdatasyncFd(fd);
            return null;
        });
    }

    @Override
    public CompletionStage<Void> trim(long offset, long length, boolean fua) {
        return submit(() -> {
            if (!punchHole(offset, length)) {
                log.debug("{}: trim is a no-op, the filesystem cannot punch holes", path);
            }
            if (fua) {
                LibC.fdatasyncFd(fd);
            }
            return null;
        });
    }

    @Override
    public CompletionStage<Void> writeZeroes(long offset, long length, boolean noHole, boolean fua) {
        return submit(() -> {
            boolean done = noHole ? zeroRange(offset, length) : punchHole(offset, length);
            if (!done) {
                writeZeroBytes(offset, length);
            }
            if (fua) {
                LibC.fdatasyncFd(fd);
            }
            return null;
        });
    }

    /** Punches a hole; false when the filesystem cannot (the caller falls back). */
    private boolean punchHole(long offset, long length) throws NativeException {
        return fallocate(LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, offset, length);
    }

    /** Zeroes the range keeping it allocated; false when the filesystem cannot (tmpfs cannot). */
    private boolean zeroRange(long offset, long length) throws NativeException {
        return fallocate(LibC.FALLOC_FL_ZERO_RANGE | LibC.FALLOC_FL_KEEP_SIZE, offset, length);
    }

    /**
     * fallocate with {@code mode}; false when the filesystem does not support that mode, which is
     * remembered so later calls go straight to the caller's fallback.
     */
    private boolean fallocate(int mode, long offset, long length) throws NativeException {
        if (unsupportedFallocateModes.contains(mode)) {
            return false;
        }
        try {
            LibC.fallocateFd(fd, mode, offset, length);
            return true;
        } catch (NativeException e) {
            if (e.errno() != Errno.EOPNOTSUPP) {
                throw e;
            }
            unsupportedFallocateModes.add(mode);
            return false;
        }
    }

    private void writeZeroBytes(long offset, long length) throws NativeException {
        ByteBuffer piece = PIECE.get();
        for (long done = 0; done < length; ) {
            int n = (int) Math.min(IO_PIECE, length - done);
            piece.clear();
            while (piece.position() < n) {
                piece.put((byte) 0);
            }
            piece.flip();
            LibC.pwriteFully(fd, piece, offset + done);
            done += n;
        }
    }

    @Override
    public CompletionStage<List<Extent>> blockStatus(long offset, long length) {
        return submit(() -> {
            List<Extent> extents = new ArrayList<>();
            long end = offset + length;
            long pos = offset;
            while (pos < end && extents.size() < MAX_EXTENTS) {
                long data = LibC.lseekFd(fd, pos, LibC.SEEK_DATA);
                if (data == pos) {
                    long hole = LibC.lseekFd(fd, pos, LibC.SEEK_HOLE);
                    long stop = hole < 0 ? end : Math.min(hole, end);
                    extents.add(new Extent(stop - pos, Extent.DATA));
                    pos = stop;
                } else {
                    long stop = data < 0 ? end : Math.min(data, end);
                    extents.add(new Extent(stop - pos, Extent.HOLE_ZERO));
                    pos = stop;
                }
            }
            return extents;
        });
    }

    @Override
    public CompletionStage<Void> cache(long offset, long length) {
        return submit(() -> {
            LibC.fadviseFd(fd, offset, length, LibC.POSIX_FADV_WILLNEED);
            return null;
        });
    }

    @Override
    public CompletionStage<Void> close() {
        return submit(() -> {
            try {
                if (!readOnly) {
                    LibC.fdatasyncFd(fd);
                }
            } finally {
                LibC.closeFd(fd);
            }
            return null;
        });
    }
}
