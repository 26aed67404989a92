package io.rbdnbd.nativeio.ceph;

import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;

/**
 * librados.so.2, direct-mapped. Handles ({@code rados_t}, {@code rados_ioctx_t}) are native
 * pointers carried as {@code long}; out-parameters are one-element {@code long[]}. Every call
 * returns a negative errno on failure. Only {@link RadosCluster} calls these.
 */
final class Librados {
    static {
        Native.register(NativeLibrary.getInstance("librados.so.2"));
    }

    private Librados() {
    }

    static native int rados_create2(long[] cluster, String clusterName, String name, long flags);

    static native int rados_conf_read_file(long cluster, String path);

    static native int rados_conf_parse_env(long cluster, String var);

    static native int rados_conf_set(long cluster, String option, String value);

    static native int rados_connect(long cluster);

    static native void rados_shutdown(long cluster);

    static native int rados_ioctx_create(long cluster, String pool, long[] ioctx);

    static native void rados_ioctx_set_namespace(long ioctx, String namespace);

    static native void rados_ioctx_destroy(long ioctx);
}
