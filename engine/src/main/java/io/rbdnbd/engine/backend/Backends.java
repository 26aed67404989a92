package io.rbdnbd.engine.backend;

import com.typesafe.config.Config;
import io.rbdnbd.nativeio.Errno;
import io.rbdnbd.nativeio.NativeException;
import org.apache.pekko.actor.ClassicActorSystemProvider;

/** Opens the backend an {@link ImageSpec} names. */
public final class Backends {
    private Backends() {
    }

    /** Dispatcher (config path) of the librbd calls that block: open, close, allocation queries, size. */
    public static final String RBD_BLOCKING_DISPATCHER = "rbdnbd.ceph.blocking-dispatcher";

    /**
     * Opens the image; for RBD this connects to the cluster and blocks up to
     * {@code rbdnbd.ceph.connect-timeout}.
     *
     * @param createSize for {@code file:} images, the size to create the file with when it does
     *                   not exist; -1 to require an existing file
     * @param config     where {@code rbdnbd.ceph} is read from (the image's own Ceph options over
     *                   the daemon's)
     * @param fileIoDispatcher dispatcher (config path) the file backend's blocking calls run on
     * @throws BackendException naming the image and what failed
     */
    public static BlockBackend open(ImageSpec spec, boolean readOnly, long createSize,
                                    Config config, ClassicActorSystemProvider system,
                                    String fileIoDispatcher) {
        if (spec instanceof ImageSpec.MemoryImage m) {
            try {
                return MemoryBackend.promised(m.size(), Runtime.getRuntime().maxMemory(), MemoryBackend.machineRam());
            } catch (IllegalArgumentException e) {
                throw new BackendException(Errno.ENOMEM, "cannot open image " + spec + ": "
                        + e.getMessage(), e);
            }
        }
        if (spec instanceof ImageSpec.Rbd r) {
            return RbdBackend.open(r, readOnly, CephSettings.from(config),
                    system.classicSystem().dispatchers().lookup(RBD_BLOCKING_DISPATCHER));
        }
        if (spec instanceof ImageSpec.FileImage f) {
            try {
                return FileBackend.open(f.path(), createSize, readOnly,
                        system.classicSystem().dispatchers().lookup(fileIoDispatcher));
            } catch (NativeException e) {
                throw new BackendException(e.errno(), "cannot open image " + spec + ": " + e.getMessage(), e);
            }
        }
        throw new IllegalArgumentException("no backend for " + spec);
    }
}
