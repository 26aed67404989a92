package io.rbdnbd.nativeio.ceph;

import io.rbdnbd.nativeio.Errno;
import io.rbdnbd.nativeio.NativeException;

import java.time.Duration;
import java.util.Map;

/**
 * One connection to a Ceph cluster (a {@code rados_t}): one client instance, so a blocklisting
 * hits exactly the images opened through it. Thread-safe as librados is.
 */
public final class RadosCluster implements AutoCloseable {

    /**
     * How to reach the cluster.
     *
     * @param clusterName    cluster name ("ceph"): picks /etc/ceph/NAME.conf
     * @param clientId       the cephx user without "client." ("admin")
     * @param confFile       ceph.conf to read; null searches $CEPH_CONF, /etc/ceph/NAME.conf, ~/.ceph/NAME.conf, ./NAME.conf
     * @param keyring        keyring path; null keeps what ceph.conf says
     * @param monHost        monitor addresses; null keeps what ceph.conf says
     * @param connectTimeout how long connecting (monitor session and authentication) may take
     * @param options        further librados/librbd settings, applied last
     */
    public record Settings(String clusterName, String clientId, String confFile, String keyring, String monHost,
                           Duration connectTimeout, Map<String, String> options) {
        public Settings {
            options = Map.copyOf(options);
        }

        String describe() {
            return "client." + clientId + "@" + clusterName + (monHost != null ? " (mon " + monHost + ")" : "");
        }
    }

    private final long handle;
    private final Settings settings;
    private volatile boolean closed;

    private RadosCluster(long handle, Settings settings) {
        this.handle = handle;
        this.settings = settings;
    }

    /**
     * Reads the configuration and connects; blocks up to {@code connectTimeout}.
     *
     * @throws NativeException naming the step that failed (ETIMEDOUT for an unreachable monitor)
     */
    public static RadosCluster connect(Settings s) throws NativeException {
        long[] out = new long[1];
        check(Librados.rados_create2(out, s.clusterName(), "client." + s.clientId(), 0),
                "create a rados client " + s.describe());
        long h = out[0];
        try {
            int r = Librados.rados_conf_read_file(h, s.confFile());
            if (r < 0 && (s.confFile() != null || s.monHost() == null)) {
                throw new NativeException(s.confFile() != null ? "read ceph config " + s.confFile()
                        : "find a ceph config ($CEPH_CONF, /etc/ceph/" + s.clusterName() + ".conf; or give a mon host)", -r);
            }
            check(Librados.rados_conf_parse_env(h, null), "apply CEPH_ARGS");
            set(h, "keyring", s.keyring());
            set(h, "mon_host", s.monHost());
            // whole seconds: the option's type is "secs"
            set(h, "client_mount_timeout", Long.toString(Math.max(1, s.connectTimeout().toSeconds())));
            for (Map.Entry<String, String> e : s.options().entrySet()) {
                set(h, e.getKey(), e.getValue());
            }
            check(Librados.rados_connect(h), "connect to the ceph cluster as " + s.describe()
                    + " within " + s.connectTimeout().toSeconds() + " s");
        } catch (NativeException | RuntimeException e) {
            Librados.rados_shutdown(h);
            throw e;
        }
        return new RadosCluster(h, s);
    }

    private static void set(long h, String option, String value) throws NativeException {
        if (value != null) {
            check(Librados.rados_conf_set(h, option, value), "set ceph option " + option + " = " + value);
        }
    }

    static void check(int r, String what) throws NativeException {
        if (r < 0) {
            throw new NativeException(what, -r);
        }
    }

    /** An I/O context on {@code pool}, in {@code namespace} (null or "" for the default one). */
    long ioctx(String pool, String namespace) throws NativeException {
        if (closed) {
            throw new NativeException("use a closed rados client", Errno.ESHUTDOWN);
        }
        long[] out = new long[1];
        int r = Librados.rados_ioctx_create(handle, pool, out);
        if (r < 0) {
            throw new NativeException(r == -Errno.ENOENT ? "pool '" + pool + "' does not exist" : "open pool '" + pool + "'", -r);
        }
        if (namespace != null && !namespace.isEmpty()) {
            Librados.rados_ioctx_set_namespace(out[0], namespace);
        }
        return out[0];
    }

    public Settings settings() {
        return settings;
    }

    /** Ends the client session. Images opened through it must be closed first. */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            Librados.rados_shutdown(handle);
        }
    }
}
