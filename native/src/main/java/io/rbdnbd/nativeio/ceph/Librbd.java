package io.rbdnbd.nativeio.ceph;

import com.sun.jna.Callback;
import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;

/**
 * librbd.so.1, direct-mapped like {@link Librados}: {@code rbd_image_t} and
 * {@code rbd_completion_t} are native pointers carried as {@code long}, buffers are native
 * addresses that must stay valid until the completion fires. Only {@link RbdImage} calls these.
 */
final class Librbd {
    static final int LOCK_MODE_EXCLUSIVE = 0;
    static final int ENCRYPTION_FORMAT_LUKS1 = 0;
    static final int ENCRYPTION_FORMAT_LUKS2 = 1;
    static final int WRITE_ZEROES_FLAG_THICK_PROVISION = 1;
    static final int OP_FLAG_FADVISE_FUA = 0x80;
    static final long FEATURE_EXCLUSIVE_LOCK = 1L << 2;
    static final long FEATURE_FAST_DIFF = 1L << 4;

    /** {@code void (*rbd_callback_t)(rbd_completion_t cb, void *arg)} */
    interface CompletionCallback extends Callback {
        void invoke(long completion, long arg);
    }

    /** {@code int (*cb)(uint64_t offset, size_t length, int exists, void *arg)} of diff_iterate2 */
    interface DiffCallback extends Callback {
        int invoke(long offset, long length, int exists, long arg);
    }

    /**
     * {@code void (*rbd_update_callback_t)(void *arg)}: the image header changed (resize, snapshot,
     * ...); also the type of rbd_quiesce_watch's quiesce and unquiesce callbacks.
     */
    interface UpdateCallback extends Callback {
        void invoke(long arg);
    }

    static {
        Native.register(NativeLibrary.getInstance("librbd.so.1"));
    }

    private Librbd() {
    }

    static native int rbd_open(long ioctx, String name, long[] image, String snapName);

    static native int rbd_open_read_only(long ioctx, String name, long[] image, String snapName);

    static native int rbd_close(long image);

    static native int rbd_snap_set_by_id(long image, long snapId);

    static native int rbd_get_size(long image, long[] size);

    static native int rbd_get_features(long image, long[] features);

    static native int rbd_lock_acquire(long image, int lockMode);

    static native int rbd_is_exclusive_lock_owner(long image, int[] isOwner);

    static native int rbd_encryption_load(long image, int format, long opts, long optsSize);

    static native int rbd_aio_create_completion(long arg, CompletionCallback callback, long[] completion);

    static native long rbd_aio_get_return_value(long completion);

    static native void rbd_aio_release(long completion);

    static native int rbd_aio_read2(long image, long offset, long length, long buf, long completion, int opFlags);

    static native int rbd_aio_write2(long image, long offset, long length, long buf, long completion, int opFlags);

    static native int rbd_aio_flush(long image, long completion);

    static native int rbd_aio_write_zeroes(long image, long offset, long length, long completion, int zeroFlags,
                                          int opFlags);

    static native int rbd_update_watch(long image, long[] handle, UpdateCallback callback, long arg);

    static native int rbd_update_unwatch(long image, long handle);

    static native int rbd_quiesce_watch(long image, UpdateCallback quiesce, UpdateCallback unquiesce, long arg,
                                        long[] handle);

    /** Answers one quiesce request; librbd aborts the process when no quiesce awaits this answer. */
    static native void rbd_quiesce_complete(long image, long handle, int r);

    static native int rbd_quiesce_unwatch(long image, long handle);

    static native int rbd_diff_iterate2(long image, String fromSnap, long offset, long length, byte includeParent,
                                        byte wholeObject, DiffCallback callback, long arg);
}
