package io.rbdnbd.engine.backend;

import io.rbdnbd.nativeio.Errno;
import io.rbdnbd.nativeio.NativeBuffer;
import io.rbdnbd.nativeio.NativeBufferPool;
import io.rbdnbd.nativeio.NativeException;
import io.rbdnbd.nativeio.ceph.RadosCluster;
import io.rbdnbd.nativeio.ceph.RbdImage;
import org.apache.pekko.util.ByteString;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;
import java.util.function.IntConsumer;
import java.util.function.Supplier;

/**
 * An RBD image through librbd: reads, writes, flushes, discards and write-zeroes are librbd aio
 * calls completing on librbd's own threads; data moves through pooled native buffers that live
 * until librbd has completed. Calls that block in librbd (allocation queries, size refresh, close)
 * run on the {@code blocking} executor.
 *
 * <p>Each backend has its own cluster connection, so a blocklisting or a lost exclusive lock hits
 * this image only; those failures come back as {@link BackendException#handleLost()}.
 *
 * <p>{@link #watchQuiesce} is librbd's quiesce watch, as Ceph's rbd-nbd {@code --quiesce} uses it.
 */
public final class RbdBackend implements BlockBackend {
    private static final Logger log = LoggerFactory.getLogger(RbdBackend.class);
    /** Idle native buffers kept across all RBD images of the process. */
    private static final NativeBufferPool BUFFERS = new NativeBufferPool(32L << 20);

    private final ImageSpec.Rbd spec;
    private final RadosCluster cluster;
    private final RbdImage image;
    private final Executor blocking;
    private final boolean wholeObjectStatus;
    /** Open {@link #watchQuiesce} sessions; closed before the image. */
    private final java.util.Set<QuiesceSession> quiesceSessions = java.util.concurrent.ConcurrentHashMap.newKeySet();
    /** How long librbd's notification thread waits for the device to take a new size. */
    private static final java.time.Duration RESIZE_WAIT = java.time.Duration.ofSeconds(10);

    private volatile long size;
    private volatile SizeListener sizeListener;

    private RbdBackend(ImageSpec.Rbd spec, RadosCluster cluster, RbdImage image, Executor blocking,
                       boolean wholeObjectStatus, long size) {
        this.spec = spec;
        this.cluster = cluster;
        this.image = image;
        this.blocking = blocking;
        this.wholeObjectStatus = wholeObjectStatus;
        this.size = size;
    }

    /**
     * Connects and opens; blocks up to the connect timeout (and however long librbd takes to open).
     *
     * @throws BackendException naming the image and what failed
     */
    public static RbdBackend open(ImageSpec.Rbd spec, boolean readOnly, RadosCluster.Settings ceph, Executor blocking) {
        RbdImage.Encryption encryption = null;
        if (spec.encryption() != null) {
            try {
                byte[] pass = Files.readAllBytes(spec.encryption().passphraseFile());
                encryption = new RbdImage.Encryption(spec.encryption().format().equals("luks1")
                        ? RbdImage.Encryption.Format.LUKS1 : RbdImage.Encryption.Format.LUKS2, pass);
            } catch (IOException e) {
                throw new BackendException(Errno.ENOENT, "cannot open image " + spec + ": cannot read the passphrase file "
                        + spec.encryption().passphraseFile() + ": " + e.getMessage(), e);
            }
        }
        RbdImage.OpenOptions options = new RbdImage.OpenOptions(readOnly, spec.snap(), spec.snapId(), spec.exclusive(),
                encryption);
        RadosCluster cluster = null;
        RbdImage image = null;
        try {
            cluster = RadosCluster.connect(ceph);
            image = RbdImage.open(cluster, spec.pool(), spec.namespace(), spec.image(), options);
            RbdBackend backend = new RbdBackend(spec, cluster, image, blocking, image.fastDiff(), image.size());
            image.watchUpdates(backend::headerChanged);
            return backend;
        } catch (NativeException e) {
            closeQuietly(image);
            if (cluster != null) {
                cluster.close();
            }
            throw new BackendException(e.errno(), "cannot open image " + spec + ": " + e.getMessage(), e);
        }
    }

    private static void closeQuietly(RbdImage image) {
        if (image != null) {
            try {
                image.close();
            } catch (NativeException ignored) {
                // already failing to open: the open error is the one to report
            }
        }
    }

    /** On librbd's watch thread: learn the new size elsewhere, so new connections see it at once. */
    /**
     * On librbd's notification thread, before librbd acknowledges the header change: a new size
     * is applied to the device (the listener) before {@code rbd resize} returns. Bounded by
     * {@link #RESIZE_WAIT}, so a stuck owner cannot hold librbd's thread for long.
     */
    private void headerChanged() {
        long now;
        try {
            now = image.size();
        } catch (NativeException e) {
            log.warn("{}: cannot read the size after a header change: {}", describe(), e.getMessage());
            return;
        }
        long before = size;
        size = now;
        SizeListener l = sizeListener;
        if (now == before || l == null) {
            return;
        }
        try {
            l.resized(now).toCompletableFuture().get(RESIZE_WAIT.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
            log.warn("{}: the device did not take the new size {} within {}; the size poll will", describe(), now,
                    RESIZE_WAIT);
        } catch (java.util.concurrent.ExecutionException e) {
            log.warn("{}: applying the new size {}: {}", describe(), now, BackendException.unwrap(e).toString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void onResized(SizeListener listener) {
        this.sizeListener = listener;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public CompletionStage<Long> refreshSize() {
        return CompletableFuture.supplyAsync(() -> {
            try {
                size = image.size();
                return size;
            } catch (NativeException e) {
                throw failure("size", e);
            }
        }, blocking);
    }

    @Override
    public boolean readOnly() {
        return image.readOnly();
    }

    @Override
    public CompletionStage<ByteString> read(long offset, int length) {
        NativeBuffer buf = BUFFERS.acquire(length);
        return image.read(offset, length, buf).handle((n, t) -> {
            try {
                if (t != null) {
                    throw failure("read", t);
                }
                byte[] out = new byte[length];
                buf.view(length).get(out);
                return ByteString.fromArrayUnsafe(out);
            } finally {
                BUFFERS.release(buf);
            }
        });
    }

    @Override
    public CompletionStage<Void> write(long offset, ByteString data, boolean fua) {
        int length = data.size();
        NativeBuffer buf = BUFFERS.acquire(length);
        data.copyToBuffer(buf.view(length));
        return image.write(offset, length, buf, fua).handle((n, t) -> {
            BUFFERS.release(buf);
            if (t != null) {
                throw failure("write", t);
            }
            return null;
        });
    }

    @Override
    public CompletionStage<Void> flush() {
        return done(image.flush(), "flush");
    }

    /**
     * Trim is librbd's write-zeroes: whole objects are removed, partial ones zeroed. (rbd_aio_discard
     * would skip the parts smaller than rbd_discard_granularity_bytes, leaving old data there.)
     */
    @Override
    public CompletionStage<Void> trim(long offset, long length, boolean fua) {
        return done(image.writeZeroes(offset, length, false, fua), "trim");
    }

    @Override
    public CompletionStage<Void> writeZeroes(long offset, long length, boolean noHole, boolean fua) {
        return done(image.writeZeroes(offset, length, noHole, fua), "write-zeroes");
    }

    /**
     * Allocation from diff_iterate2 against the beginning of time: reported extents are data,
     * the gaps between them holes reading as zeroes. With fast-diff the granule is the object.
     */
    @Override
    public CompletionStage<List<Extent>> blockStatus(long offset, long length) {
        return CompletableFuture.supplyAsync(() -> {
            List<long[]> allocated = new ArrayList<>();
            try {
                image.diffIterate(offset, length, wholeObjectStatus, (off, len, exists) -> {
                    if (exists) {
                        allocated.add(new long[]{off, len});
                    }
                });
            } catch (NativeException e) {
                throw failure("block-status", e);
            }
            return extents(offset, length, allocated);
        }, blocking);
    }

    /** Data and hole extents covering exactly [offset, offset + length), from unordered allocated runs. */
    static List<Extent> extents(long offset, long length, List<long[]> allocated) {
        allocated.sort((a, b) -> Long.compare(a[0], b[0]));
        List<Extent> out = new ArrayList<>();
        long pos = offset;
        long end = offset + length;
        for (long[] run : allocated) {
            long from = Math.max(run[0], pos);
            long to = Math.min(run[0] + run[1], end);
            if (to <= from) {
                continue;
            }
            if (from > pos) {
                add(out, from - pos, Extent.HOLE_ZERO);
            }
            add(out, to - from, Extent.DATA);
            pos = to;
        }
        if (pos < end) {
            add(out, end - pos, Extent.HOLE_ZERO);
        }
        return out;
    }

    private static void add(List<Extent> out, long len, int flags) {
        if (!out.isEmpty() && out.get(out.size() - 1).flags() == flags) {
            Extent last = out.remove(out.size() - 1);
            out.add(new Extent(last.length() + len, flags));
        } else {
            out.add(new Extent(len, flags));
        }
    }

    /** librbd has its own readahead; nothing to do. */
    @Override
    public CompletionStage<Void> cache(long offset, long length) {
        return CompletableFuture.completedFuture(null);
    }

    /**
     * Runs {@code handler} around every snapshot of the image, as Ceph's rbd-nbd does: its
     * quiesce, then a flush of the image, then the answer to librbd (a failure of either fails
     * the snapshot with its errno); after the snapshot its unquiesce. Should the flush fail after
     * the handler's quiesce succeeded, the handler is unquiesced at once. The handler's calls run
     * on the blocking executor. Closing the result, or this backend, ends the watch.
     */
    @Override
    public Optional<AutoCloseable> watchQuiesce(QuiesceHandler handler) {
        try {
            QuiesceSession session = QuiesceSession.start(image, new QuiesceRelay(handler), blocking);
            quiesceSessions.add(session);
            return Optional.of(() -> {
                quiesceSessions.remove(session);
                session.close();
            });
        } catch (NativeException e) {
            throw failure("watch for snapshots", e);
        }
    }

    /**
     * Between librbd's quiesce watch and a handler. librbd's requests come one at a time; the
     * handler's calls are chained as well, so that an unquiesce still running delays the next
     * quiesce rather than overlapping it.
     */
    private final class QuiesceRelay implements QuiesceSession.Listener {
        private final QuiesceHandler handler;
        /** The handler's last call, with the flush and the answer of a quiesce. */
        private CompletableFuture<Void> last = CompletableFuture.completedFuture(null);

        QuiesceRelay(QuiesceHandler handler) {
            this.handler = handler;
        }

        @Override
        public synchronized void quiesce(IntConsumer done) {
            last = last.thenComposeAsync(v -> {
                log.info("{}: a snapshot is being taken: quiescing", describe());
                return call(handler::quiesce).thenCompose(q -> flushForSnapshot().exceptionallyCompose(t ->
                        call(handler::unquiesce).handle((u, undoFailure) -> {
                            if (undoFailure != null) {
                                log.warn("{}: unquiescing after the failed flush failed too: {}", describe(),
                                        message(undoFailure));
                            }
                            throw t instanceof CompletionException ce ? ce : new CompletionException(t);
                        })));
            }, blocking).handle((v, t) -> {
                if (t == null) {
                    log.info("{}: quiesced; the snapshot is taken now", describe());
                    done.accept(0);
                } else {
                    Throwable c = BackendException.unwrap(t);
                    int errno = c instanceof BackendException be ? be.errno()
                            : c instanceof NativeException ne ? ne.errno() : Errno.EIO;
                    log.warn("{}: quiescing failed, so the snapshot fails: {}", describe(), message(c));
                    done.accept(-errno);
                }
                return null;
            });
        }

        @Override
        public synchronized void unquiesce() {
            last = last.thenComposeAsync(v -> call(handler::unquiesce).<Void>handle((u, t) -> {
                if (t == null) {
                    log.info("{}: unquiesced after the snapshot", describe());
                } else {
                    log.warn("{}: unquiescing after the snapshot failed: {}", describe(), message(t));
                }
                return null;
            }), blocking).exceptionally(t -> { // the executor refused: shutting down
                log.warn("{}: cannot unquiesce after the snapshot: {}", describe(), message(t));
                return null;
            });
        }

        /** The handler's stage; one that throws instead of failing its stage fails it all the same. */
        private CompletableFuture<Void> call(Supplier<CompletionStage<Void>> step) {
            try {
                return step.get().toCompletableFuture();
            } catch (RuntimeException e) {
                return CompletableFuture.failedFuture(e);
            }
        }
    }

    /**
     * The flush that is part of a quiesce. As in Ceph's rbd-nbd, only with the exclusive lock
     * held or no such lock: without it this client has no write in flight, and a flush would ask
     * for the lock, which the client taking the snapshot may hold while it waits for us.
     */
    private CompletableFuture<Void> flushForSnapshot() {
        if (image.readOnly()) {
            return CompletableFuture.completedFuture(null);
        }
        return CompletableFuture.supplyAsync(() -> {
            try {
                return !image.exclusiveLockEnabled() || image.ownsExclusiveLock();
            } catch (NativeException e) {
                throw failure("flush before a snapshot", e);
            }
        }, blocking).thenCompose(needed -> {
            if (needed) {
                return flush().toCompletableFuture();
            }
            log.debug("{}: not flushing before the snapshot: this client does not hold the exclusive lock", describe());
            return CompletableFuture.<Void>completedFuture(null);
        });
    }

    private static String message(Throwable t) {
        Throwable c = BackendException.unwrap(t);
        return c.getMessage() != null ? c.getMessage() : c.toString();
    }

    @Override
    public CompletionStage<Void> close() {
        return CompletableFuture.runAsync(() -> {
            try {
                for (QuiesceSession q : quiesceSessions) { // first: a listener holding writes is unquiesced
                    q.close();
                }
                quiesceSessions.clear();
                image.close();
            } catch (NativeException e) {
                throw failure("close", e);
            } finally {
                cluster.close();
            }
        }, blocking);
    }

    @Override
    public String describe() {
        return "rbd:" + spec;
    }

    private CompletionStage<Void> done(CompletableFuture<Long> op, String what) {
        return op.handle((n, t) -> {
            if (t != null) {
                throw failure(what, t);
            }
            return null;
        });
    }

    /**
     * The client's view of a librbd failure. A blocklisted client (ESHUTDOWN, which is
     * EBLOCKLISTED), a dead connection (ENOTCONN) or, for an image opened with the exclusive lock,
     * EROFS (the lock was taken away) leave the handle unusable: reopening is the only way on.
     */
    private BackendException failure(String op, Throwable t) {
        Throwable cause = BackendException.unwrap(t);
        if (cause instanceof BackendException be) {
            return be;
        }
        int errno = cause instanceof NativeException ne ? ne.errno() : Errno.EIO;
        String message = describe() + ": " + op + " failed: " + cause.getMessage();
        boolean lost = errno == Errno.ESHUTDOWN || errno == Errno.ENOTCONN
                || (errno == Errno.EROFS && spec.exclusive() && !image.readOnly());
        return lost ? BackendException.handleLost(errno, message) : new BackendException(errno, message, cause);
    }
}
