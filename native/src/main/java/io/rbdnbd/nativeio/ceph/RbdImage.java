package io.rbdnbd.nativeio.ceph;

import com.sun.jna.CallbackThreadInitializer;
import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import io.rbdnbd.nativeio.Errno;
import io.rbdnbd.nativeio.NativeBuffer;
import io.rbdnbd.nativeio.NativeException;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An open RBD image (an {@code rbd_image_t}). The {@code aio} calls return at once and complete
 * their future from librbd's completion thread with librbd's return value, or exceptionally with
 * a {@link NativeException} carrying librbd's errno. A buffer passed to a call must stay untouched
 * until its future completes.
 *
 * <p>All completions go through one static JNA callback whose native threads stay attached to the
 * JVM (a {@link CallbackThreadInitializer} without detach): no thread attach per I/O. The same
 * holds for the update and quiesce watches' callbacks.
 */
public final class RbdImage implements AutoCloseable {

    /** LUKS encryption to load after opening; the passphrase is wiped from native memory after use. */
    public record Encryption(Format format, byte[] passphrase) {
        public enum Format { LUKS1, LUKS2 }
    }

    /**
     * How to open.
     *
     * @param readOnly   open read-only (implied by a snapshot)
     * @param snapName   snapshot name, or null
     * @param snapId     snapshot id, or -1
     * @param exclusive  take the exclusive lock and keep it (other clients' writes then fail)
     * @param encryption LUKS to load, or null
     */
    public record OpenOptions(boolean readOnly, String snapName, long snapId, boolean exclusive, Encryption encryption) {
        public static final OpenOptions READ_WRITE = new OpenOptions(false, null, -1, false, null);

        public boolean atSnapshot() {
            return snapName != null || snapId >= 0;
        }
    }

    /** Receives the allocated extents diff_iterate2 reports. */
    public interface DiffSink {
        void extent(long offset, long length, boolean exists);
    }

    /**
     * librbd's quiesce watch ({@code rbd_quiesce_watch}), as called on librbd's image work queue:
     * each call must return at once (queue the work elsewhere), as that queue must not wait for
     * a hook or a flush. The policy around snapshots lives above the bindings.
     */
    public interface QuiesceCallbacks {
        /**
         * A snapshot is about to be taken: answer it with {@link QuiesceWatch#complete}, 0 once
         * writes are stopped and flushed, or a negative errno to make the snapshot fail.
         */
        void quiesce();

        /** The snapshot is taken (or failed); librbd sends it only after a quiesce answered 0. */
        void unquiesce();
    }

    private static final Map<Long, Aio> PENDING = new ConcurrentHashMap<>();
    private static final Map<Long, DiffSink> DIFFS = new ConcurrentHashMap<>();
    private static final Map<Long, Runnable> WATCHERS = new ConcurrentHashMap<>();
    private static final Map<Long, QuiesceWatch> QUIESCE_WATCHES = new ConcurrentHashMap<>();
    private static final AtomicLong IDS = new AtomicLong();

    private static final Librbd.CompletionCallback ON_COMPLETE = RbdImage::completed;
    private static final Librbd.DiffCallback ON_DIFF = RbdImage::diffExtent;
    private static final Librbd.UpdateCallback ON_UPDATE = RbdImage::updated;
    private static final Librbd.UpdateCallback ON_QUIESCE = RbdImage::quiesceRequested;
    private static final Librbd.UpdateCallback ON_UNQUIESCE = RbdImage::unquiesceRequested;

    static {
        Native.setCallbackThreadInitializer(ON_COMPLETE, new CallbackThreadInitializer(true, false, "librbd-completion"));
        Native.setCallbackThreadInitializer(ON_DIFF, new CallbackThreadInitializer(true, false, "librbd-diff"));
        Native.setCallbackThreadInitializer(ON_UPDATE, new CallbackThreadInitializer(true, false, "librbd-watch"));
        Native.setCallbackThreadInitializer(ON_QUIESCE, new CallbackThreadInitializer(true, false, "librbd-quiesce"));
        Native.setCallbackThreadInitializer(ON_UNQUIESCE, new CallbackThreadInitializer(true, false, "librbd-quiesce"));
    }

    /** One asynchronous call: what it was (for the error message) and who waits for it. */
    private static final class Aio extends CompletableFuture<Long> {
        final String op;
        final long offset;

        Aio(String op, long offset) {
            this.op = op;
            this.offset = offset;
        }
    }

    private final long ioctx;
    private final long handle;
    private final String name;
    private final boolean readOnly;
    private volatile boolean closed;
    private long watchId = -1;
    private long watchHandle;
    /** Open quiesce watches; guarded by this. */
    private final List<QuiesceWatch> quiesceWatches = new ArrayList<>();

    private RbdImage(long ioctx, long handle, String name, boolean readOnly) {
        this.ioctx = ioctx;
        this.handle = handle;
        this.name = name;
        this.readOnly = readOnly;
    }

    /**
     * Opens {@code pool/[namespace/]image}; blocks.
     *
     * @throws NativeException naming what was missing or refused (ENOENT for a wrong pool, image or snapshot)
     */
    public static RbdImage open(RadosCluster cluster, String pool, String namespace, String image, OpenOptions o)
            throws NativeException {
        String name = pool + "/" + (namespace == null || namespace.isEmpty() ? "" : namespace + "/") + image;
        long io = cluster.ioctx(pool, namespace);
        long[] out = new long[1];
        boolean ro = o.readOnly() || o.atSnapshot();
        int r = ro ? Librbd.rbd_open_read_only(io, image, out, o.snapName())
                : Librbd.rbd_open(io, image, out, null);
        if (r < 0) {
            Librados.rados_ioctx_destroy(io);
            String what = r == -Errno.ENOENT
                    ? (o.snapName() != null ? "image '" + name + "' or its snapshot '" + o.snapName() + "' does not exist"
                    : "image '" + name + "' does not exist")
                    : "open image '" + name + "'";
            throw new NativeException(what, -r);
        }
        RbdImage img = new RbdImage(io, out[0], name + (o.snapName() != null ? "@" + o.snapName() : ""), ro);
        try {
            if (o.snapId() >= 0) {
                RadosCluster.check(Librbd.rbd_snap_set_by_id(img.handle, o.snapId()),
                        "open snapshot id " + o.snapId() + " of '" + name + "'");
            }
            if (o.encryption() != null) {
                img.loadEncryption(o.encryption());
            }
            if (o.exclusive()) {
                RadosCluster.check(Librbd.rbd_lock_acquire(img.handle, Librbd.LOCK_MODE_EXCLUSIVE),
                        "take the exclusive lock of '" + name + "' (is it mapped elsewhere?)");
            }
        } catch (NativeException | RuntimeException e) {
            img.close();
            throw e;
        }
        return img;
    }

    private void loadEncryption(Encryption e) throws NativeException {
        // rbd_encryption_luks{1,2}_format_options_t: { int alg; const char *passphrase; size_t passphrase_size; }
        byte[] pass = e.passphrase();
        try (Memory secret = new Memory(Math.max(1, pass.length)); Memory opts = new Memory(24)) {
            secret.write(0, pass, 0, pass.length);
            opts.clear();
            opts.setPointer(8, secret);
            opts.setLong(16, pass.length);
            int format = e.format() == Encryption.Format.LUKS1 ? Librbd.ENCRYPTION_FORMAT_LUKS1 : Librbd.ENCRYPTION_FORMAT_LUKS2;
            int r = Librbd.rbd_encryption_load(handle, format, Pointer.nativeValue(opts), 24);
            secret.clear();
            RadosCluster.check(r, "load " + e.format() + " encryption of '" + name + "' (wrong passphrase or format?)");
        } finally {
            Arrays.fill(pass, (byte) 0);
        }
    }

    public String name() {
        return name;
    }

    public boolean readOnly() {
        return readOnly;
    }

    /** The image's size, refreshing the header first if a watch notification said it changed; may block. */
    public long size() throws NativeException {
        long[] out = new long[1];
        RadosCluster.check(Librbd.rbd_get_size(handle, out), "get the size of '" + name + "'");
        return out[0];
    }

    /** True when the image has fast-diff (an object map), so allocation queries need not visit objects. */
    public boolean fastDiff() throws NativeException {
        long[] out = new long[1];
        RadosCluster.check(Librbd.rbd_get_features(handle, out), "get the features of '" + name + "'");
        return (out[0] & Librbd.FEATURE_FAST_DIFF) != 0;
    }

    /** True when the image has the exclusive-lock feature (writes and user flushes need the lock). */
    public boolean exclusiveLockEnabled() throws NativeException {
        ensureOpen();
        long[] out = new long[1];
        RadosCluster.check(Librbd.rbd_get_features(handle, out), "get the features of '" + name + "'");
        return (out[0] & Librbd.FEATURE_EXCLUSIVE_LOCK) != 0;
    }

    public boolean ownsExclusiveLock() throws NativeException {
        ensureOpen();
        int[] out = new int[1];
        RadosCluster.check(Librbd.rbd_is_exclusive_lock_owner(handle, out), "ask for the lock owner of '" + name + "'");
        return out[0] != 0;
    }

    public CompletableFuture<Long> read(long offset, int length, NativeBuffer buf) {
        Aio aio = new Aio("read", offset);
        return submit(aio, c -> Librbd.rbd_aio_read2(handle, offset, length, buf.address(), c, 0));
    }

    public CompletableFuture<Long> write(long offset, int length, NativeBuffer buf, boolean fua) {
        Aio aio = new Aio("write", offset);
        int flags = fua ? Librbd.OP_FLAG_FADVISE_FUA : 0;
        return submit(aio, c -> Librbd.rbd_aio_write2(handle, offset, length, buf.address(), c, flags));
    }

    public CompletableFuture<Long> flush() {
        Aio aio = new Aio("flush", 0);
        return submit(aio, c -> Librbd.rbd_aio_flush(handle, c));
    }

    /** @param allocate keep the range allocated (thick) instead of letting librbd deallocate it */
    public CompletableFuture<Long> writeZeroes(long offset, long length, boolean allocate, boolean fua) {
        Aio aio = new Aio("write-zeroes", offset);
        int zeroFlags = allocate ? Librbd.WRITE_ZEROES_FLAG_THICK_PROVISION : 0;
        int opFlags = fua ? Librbd.OP_FLAG_FADVISE_FUA : 0;
        return submit(aio, c -> Librbd.rbd_aio_write_zeroes(handle, offset, length, c, zeroFlags, opFlags));
    }

    /**
     * Reports the allocated extents in the range, parent included; blocks until done. With
     * {@code wholeObject} extents are whole objects (fast with an object map).
     */
    public void diffIterate(long offset, long length, boolean wholeObject, DiffSink sink) throws NativeException {
        ensureOpen();
        long id = IDS.incrementAndGet();
        DIFFS.put(id, sink);
        try {
            RadosCluster.check(Librbd.rbd_diff_iterate2(handle, null, offset, length, (byte) 1,
                    (byte) (wholeObject ? 1 : 0), ON_DIFF, id), "query the allocation of '" + name + "'");
        } finally {
            DIFFS.remove(id);
        }
    }

    private static int diffExtent(long offset, long length, int exists, long id) {
        DiffSink sink = DIFFS.get(id);
        if (sink == null) {
            return -Errno.EINVAL;
        }
        try {
            sink.extent(offset, length, exists != 0);
            return 0;
        } catch (RuntimeException e) {
            return -Errno.EIO;
        }
    }

    /**
     * Runs {@code onChange} on a librbd thread whenever the image's header changes: a resize, a
     * snapshot, a lock change. librbd acknowledges the change to whoever made it (e.g. {@code rbd
     * resize}) once this returns, so what must be done before that happens here, bounded in time;
     * nothing else may block there. One watch per image; ended by close.
     */
    public synchronized void watchUpdates(Runnable onChange) throws NativeException {
        ensureOpen();
        if (watchId >= 0) {
            throw new IllegalStateException("'" + name + "' is watched already");
        }
        long id = IDS.incrementAndGet();
        WATCHERS.put(id, onChange);
        long[] out = new long[1];
        int r = Librbd.rbd_update_watch(handle, out, ON_UPDATE, id);
        if (r < 0) {
            WATCHERS.remove(id);
            throw new NativeException("watch '" + name + "' for changes", -r);
        }
        watchId = id;
        watchHandle = out[0];
    }

    private static void updated(long id) {
        Runnable r = WATCHERS.get(id);
        if (r != null) {
            try {
                r.run();
            } catch (RuntimeException ignored) {
                // nothing may escape into librbd's thread; the watcher logs its own failures
            }
        }
    }

    /**
     * Watches the image for snapshots being taken ({@code rbd_quiesce_watch}); {@code callbacks}
     * run on librbd's thread. Several watches may be open; each is ended by its
     * {@link QuiesceWatch#close()} or by closing the image.
     */
    public QuiesceWatch watchQuiesce(QuiesceCallbacks callbacks) throws NativeException {
        synchronized (this) {
            ensureOpen();
            QuiesceWatch w = new QuiesceWatch(IDS.incrementAndGet(), callbacks);
            synchronized (w) { // a request arriving before the handle is known waits here for it
                QUIESCE_WATCHES.put(w.id, w);
                long[] out = new long[1];
                int r = Librbd.rbd_quiesce_watch(handle, ON_QUIESCE, ON_UNQUIESCE, w.id, out);
                if (r < 0) {
                    QUIESCE_WATCHES.remove(w.id);
                    throw new NativeException("watch '" + name + "' for snapshots", -r);
                }
                w.watchHandle = out[0];
            }
            quiesceWatches.add(w);
            return w;
        }
    }

    private static void quiesceRequested(long id) {
        QuiesceWatch w = QUIESCE_WATCHES.get(id);
        if (w != null) {
            try {
                w.requested();
            } catch (Throwable ignored) {
                // nothing may escape into librbd's thread
            }
        }
    }

    private static void unquiesceRequested(long id) {
        QuiesceWatch w = QUIESCE_WATCHES.get(id);
        if (w != null) {
            try {
                w.unquiesced();
            } catch (Throwable ignored) {
                // nothing may escape into librbd's thread
            }
        }
    }

    /**
     * One quiesce watch of this image. It keeps librbd's rule that every request is answered
     * exactly once ({@code rbd_quiesce_complete} aborts the process when nothing awaits an answer,
     * and an unanswered one stalls the snapshot and any unwatch), and never after the image is
     * closed: an answer with none due is dropped, and closing answers what is still due with
     * -ESHUTDOWN.
     */
    public final class QuiesceWatch implements AutoCloseable {
        private final long id;
        private final QuiesceCallbacks callbacks;
        // all guarded by this
        private long watchHandle;
        /** Requests handed to the callbacks and not answered yet. */
        private int due;
        /** rbd_quiesce_complete calls under way; closing waits for them. */
        private int answering;
        private boolean closed;

        private QuiesceWatch(long id, QuiesceCallbacks callbacks) {
            this.id = id;
            this.callbacks = callbacks;
        }

        /** On librbd's thread. */
        private void requested() {
            boolean open;
            synchronized (this) {
                open = !closed;
                if (open) {
                    due++;
                }
            }
            if (!open) {
                // The unwatch under way cannot return before this request is answered, so the
                // image is still open.
                Librbd.rbd_quiesce_complete(handle, watchHandle, -Errno.ESHUTDOWN);
                return;
            }
            try {
                callbacks.quiesce();
            } catch (RuntimeException e) {
                complete(-Errno.EIO);
            }
        }

        /** On librbd's thread. librbd skips the watches that answered a quiesce with an error. */
        private void unquiesced() {
            synchronized (this) {
                if (closed) {
                    return;
                }
            }
            callbacks.unquiesce();
        }

        /**
         * Answers the request due ({@code rbd_quiesce_complete}): 0, or a negative errno to fail
         * the snapshot. Dropped when none is due (the watch was closed, which answered it).
         */
        public void complete(int r) {
            synchronized (this) {
                if (closed || due == 0) {
                    return;
                }
                due--;
                answering++;
            }
            try {
                Librbd.rbd_quiesce_complete(handle, watchHandle, Math.min(r, 0));
            } finally {
                synchronized (this) {
                    if (--answering == 0) {
                        notifyAll();
                    }
                }
            }
        }

        /**
         * Ends the watch; blocks until librbd has let go of it: at once, unless another quiesce
         * watch of this image has yet to answer a request (then until that snapshot has ended, as
         * librbd lets go of watches only between snapshots). A request still due is answered
         * -ESHUTDOWN, so that snapshot fails; the callbacks hear nothing more. Idempotent.
         */
        @Override
        public void close() throws NativeException {
            synchronized (RbdImage.this) {
                if (quiesceWatches.remove(this)) {
                    unwatch();
                }
            }
        }

        /** Under the image's lock. */
        private void unwatch() throws NativeException {
            int refuse;
            synchronized (this) {
                closed = true;
                refuse = due;
                due = 0;
                boolean interrupted = false;
                while (answering > 0) {
                    try {
                        wait();
                    } catch (InterruptedException e) {
                        interrupted = true; // the wait is one native call long; finish it
                    }
                }
                if (interrupted) {
                    Thread.currentThread().interrupt();
                }
            }
            for (int i = 0; i < refuse; i++) {
                Librbd.rbd_quiesce_complete(handle, watchHandle, -Errno.ESHUTDOWN);
            }
            int r = Librbd.rbd_quiesce_unwatch(handle, watchHandle);
            QUIESCE_WATCHES.remove(id);
            RadosCluster.check(r, "stop watching '" + name + "' for snapshots");
        }
    }

    private interface Submit {
        int call(long completion);
    }

    private CompletableFuture<Long> submit(Aio aio, Submit submit) {
        if (closed) {
            aio.completeExceptionally(new NativeException(aio.op + " on closed image '" + name + "'", Errno.ESHUTDOWN));
            return aio;
        }
        long id = IDS.incrementAndGet();
        long[] comp = new long[1];
        int r = Librbd.rbd_aio_create_completion(id, ON_COMPLETE, comp);
        if (r < 0) {
            aio.completeExceptionally(new NativeException("create an rbd completion", -r));
            return aio;
        }
        // registered before the call: librbd may complete on this very thread
        PENDING.put(id, aio);
        r = submit.call(comp[0]);
        if (r < 0 && PENDING.remove(id) != null) {
            Librbd.rbd_aio_release(comp[0]);
            fail(aio, -r);
        }
        return aio;
    }

    private static void completed(long completion, long id) {
        try {
            long r = Librbd.rbd_aio_get_return_value(completion);
            Librbd.rbd_aio_release(completion);
            Aio aio = PENDING.remove(id);
            if (aio == null) {
                return;
            }
            if (r < 0) {
                fail(aio, (int) -r);
            } else {
                aio.complete(r);
            }
        } catch (Throwable t) {
            // nothing may escape into librbd's thread; the waiter must still hear of it
            Aio aio = PENDING.remove(id);
            if (aio != null) {
                aio.completeExceptionally(t);
            }
        }
    }

    private static void fail(Aio aio, int errno) {
        aio.completeExceptionally(new NativeException("rbd " + aio.op + (aio.op.equals("flush") ? "" : " at " + aio.offset), errno));
    }

    private void ensureOpen() throws NativeException {
        if (closed) {
            throw new NativeException("use closed image '" + name + "'", Errno.ESHUTDOWN);
        }
    }

    /** Flushes, waits for in-flight I/O and releases the image; blocks. Idempotent. */
    @Override
    public void close() throws NativeException {
        if (closed) {
            return;
        }
        closed = true;
        synchronized (this) {
            for (QuiesceWatch w : quiesceWatches) {
                try {
                    w.unwatch();
                } catch (NativeException ignored) {
                    // fails only if librbd has forgotten the watch already
                }
            }
            quiesceWatches.clear();
            if (watchId >= 0) {
                Librbd.rbd_update_unwatch(handle, watchHandle); // fails only if already gone
                WATCHERS.remove(watchId);
            }
        }
        int r = Librbd.rbd_close(handle);
        Librados.rados_ioctx_destroy(ioctx);
        RadosCluster.check(r, "close '" + name + "'");
    }
}
