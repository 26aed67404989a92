package io.rbdnbd.it.ceph;

import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.backend.ImageSpec;
import io.rbdnbd.engine.backend.RbdBackend;
import io.rbdnbd.nativeio.ceph.RadosCluster;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * The RBD images a test class creates on the shared cluster and the backends it opens on them:
 * {@link #cleanUp} (after each test) closes every backend still open and removes every image with
 * its snapshots; {@link #shutdown} (after the class) stops the blocking executor.
 */
final class RbdImages {
    private final CephCluster ceph;
    private final ExecutorService blocking = Executors.newCachedThreadPool();
    private final List<String> images = new ArrayList<>();
    private final List<BlockBackend> opened = new ArrayList<>();

    RbdImages(CephCluster ceph) {
        this.ceph = ceph;
    }

    /** client.admin through the cluster's ceph.conf, a 20 s connect timeout. */
    RadosCluster.Settings settings() {
        return new RadosCluster.Settings("ceph", "admin", ceph.conf().toString(), null, null, Duration.ofSeconds(20),
                Map.of());
    }

    ExecutorService blocking() {
        return blocking;
    }

    /** Creates {@code rbd/NAME-...} of {@code size} (rbd's units, e.g. 64M); removed by {@link #cleanUp}. */
    String create(String name, String size) {
        String spec = ceph.createImage(name, size);
        images.add(spec);
        return spec;
    }

    /** The images created, in order. */
    String image(int i) {
        return images.get(i);
    }

    /** Opens a backend that {@link #cleanUp} closes (if the test did not). */
    BlockBackend open(ImageSpec.Rbd spec, boolean readOnly) {
        BlockBackend b = RbdBackend.open(spec, readOnly, settings(), blocking);
        opened.add(b);
        return b;
    }

    static ImageSpec.Rbd rbd(String spec) {
        return (ImageSpec.Rbd) ImageSpec.parse(spec);
    }

    void cleanUp() throws Exception {
        for (BlockBackend b : opened) {
            try {
                b.close().toCompletableFuture().get(60, TimeUnit.SECONDS);
            } catch (Exception ignored) {
                // closed by the test, or lost
            }
        }
        opened.clear();
        for (String image : images) {
            ceph.rbd("snap", "purge", "--no-progress", image);
            ceph.removeImage(image);
        }
        images.clear();
    }

    void shutdown() {
        blocking.shutdownNow();
    }
}
