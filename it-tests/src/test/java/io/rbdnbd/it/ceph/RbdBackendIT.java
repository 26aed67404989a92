package io.rbdnbd.it.ceph;

import io.rbdnbd.engine.backend.BackendException;
import io.rbdnbd.it.Commands;
import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.backend.BlockBackendContract;
import io.rbdnbd.engine.backend.ImageSpec;
import io.rbdnbd.engine.backend.RbdBackend;
import io.rbdnbd.nativeio.Errno;
import io.rbdnbd.nativeio.ceph.RadosCluster;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static io.rbdnbd.it.ceph.RbdImages.rbd;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The backend contract against a real cluster, and what only RBD has: snapshots, namespaces, locks, LUKS. */
class RbdBackendIT extends BlockBackendContract {
    private static CephCluster ceph;
    private static RbdImages images;

    @TempDir
    Path dir;

    @BeforeAll
    static void cluster() {
        ceph = CephCluster.shared();
        images = new RbdImages(ceph);
    }

    @AfterAll
    static void stop() {
        images.shutdown();
    }

    @AfterEach
    void removeImages() throws Exception {
        if (backend != null) {
            await(backend.close());
            backend = null;
        }
        images.cleanUp();
    }

    @Override
    protected BlockBackend create(long size) {
        return RbdBackend.open(rbd(images.create("contract", (size >> 20) + "M")), false, images.settings(),
                images.blocking());
    }

    /** Allocation is reported per object (4 MiB) from the object map, so a partial trim stays data. */
    @Override
    protected boolean deallocates() {
        return false;
    }

    @Test
    void snapshotServesReadOnlyWhatWasThereAtSnapshotTime() throws Exception {
        byte[] before = random(65536, 11);
        await(backend.write(0, ByteString.fromArray(before), true));
        await(backend.flush());
        String image = images.image(0);
        ceph.rbd("snap", "create", image + "@s1");
        await(backend.write(0, ByteString.fromArray(random(65536, 12)), true));

        BlockBackend snap = images.open(rbd(image + "@s1"), false);
        assertTrue(snap.readOnly());
        assertArrayEquals(before, await(snap.read(0, 65536)).toArray());
        ceph.rbd("snap", "rm", image + "@s1");
    }

    @Test
    void namespacesAreSeparateImages() throws Exception {
        String ns = "ns" + Long.toHexString(System.nanoTime());
        ceph.rbd("namespace", "create", "rbd/" + ns);
        String inNs = "rbd/" + ns + "/img";
        ceph.rbd("create", "--size", "16M", inNs);
        try {
            BlockBackend b = images.open(rbd(inNs), false);
            assertEquals(16L << 20, b.size());
            byte[] a = random(4096, 13);
            await(b.write(4096, ByteString.fromArray(a), true));
            await(b.close());
            Path out = dir.resolve("ns.raw");
            ceph.rbd("export", inNs, out.toString());
            byte[] exported = Files.readAllBytes(out);
            byte[] at = new byte[4096];
            System.arraycopy(exported, 4096, at, 0, 4096);
            assertArrayEquals(a, at);
        } finally {
            ceph.rbd("rm", "--no-progress", inNs);
            ceph.rbd("namespace", "remove", "rbd/" + ns);
        }
    }

    @Test
    void resizeIsSeenByRefreshSize() throws Exception {
        String image = images.image(0);
        ceph.rbd("resize", "--size", "128M", image);
        assertEquals(128L << 20, await(backend.refreshSize()));
        assertEquals(128L << 20, backend.size());
    }

    @Test
    void wrongPoolImageSnapshotAndKeyringAreClearErrors() {
        BackendException pool = assertThrows(BackendException.class, () -> images.open(rbd("nopool/img"), false));
        assertTrue(pool.getMessage().contains("pool 'nopool' does not exist"), pool.getMessage());
        assertEquals(Errno.ENOENT, pool.errno());

        BackendException image = assertThrows(BackendException.class, () -> images.open(rbd("rbd/no-such-image"), false));
        assertTrue(image.getMessage().contains("image 'rbd/no-such-image' does not exist"), image.getMessage());

        BackendException snap = assertThrows(BackendException.class, () -> images.open(rbd(images.image(0) + "@nosnap"), false));
        assertTrue(snap.getMessage().contains("nosnap"), snap.getMessage());

        RadosCluster.Settings badKeyring = new RadosCluster.Settings("ceph", "admin", ceph.conf().toString(),
                dir.resolve("missing.keyring").toString(), null, Duration.ofSeconds(10), Map.of());
        BackendException key = assertThrows(BackendException.class,
                () -> RbdBackend.open(rbd(images.image(0)), false, badKeyring, images.blocking()));
        assertTrue(key.getMessage().contains("connect to the ceph cluster"), key.getMessage());
    }

    @Test
    void unreachableMonitorFailsWithinTheConnectTimeout() {
        // 127.0.0.1:1 refuses connections: nothing outside this machine is contacted
        RadosCluster.Settings deadMon = new RadosCluster.Settings("ceph", "admin", ceph.conf().toString(), null,
                "v1:127.0.0.1:1", Duration.ofSeconds(3), Map.of());
        long t0 = System.nanoTime();
        BackendException e = assertThrows(BackendException.class,
                () -> RbdBackend.open(rbd(images.image(0)), false, deadMon, images.blocking()));
        long secs = (System.nanoTime() - t0) / 1_000_000_000L;
        assertEquals(Errno.ETIMEDOUT, e.errno(), e.getMessage());
        assertTrue(secs < 30, "gave up after " + secs + " s");
        assertTrue(e.getMessage().contains("within 3 s"), e.getMessage());
    }

    @Test
    void exclusiveLockKeepsOtherWritersOut() throws Exception {
        String image = images.image(0);
        BlockBackend holder = images.open(rbd(image).withExclusive(true), false);
        await(holder.write(0, ByteString.fromArray(random(4096, 14)), true));
        Commands.Result other = ceph.run(Duration.ofSeconds(60), "rbd", "bench", "--io-type", "write",
                "--io-size", "4K", "--io-total", "64K", image);
        assertTrue(!other.succeeded() && !other.timedOut(),
                "another client's write must fail (not succeed, not hang) while we hold the exclusive lock\n"
                        + other.describe());
        await(holder.close());
        ceph.rbd("bench", "--io-type", "write", "--io-size", "4K", "--io-total", "64K", image);
    }

    @Test
    void luks2ImageReadsBackThroughTheEncryptionAndIsCiphertextBelow() throws Exception {
        String image = images.create("luks", "32M");
        Path pass = dir.resolve("pass");
        Files.writeString(pass, "correct horse battery staple");
        ceph.rbd("encryption", "format", image, "luks2", pass.toString());
        ImageSpec.Rbd spec = rbd(image).withEncryption(new ImageSpec.Rbd.Encryption("luks2", pass));
        BlockBackend enc = images.open(spec, false);
        assertTrue(enc.size() < 32L << 20, "the LUKS header is not part of the device: " + enc.size());
        byte[] a = random(65536, 15);
        await(enc.write(0, ByteString.fromArray(a), true));
        await(enc.close());

        BlockBackend again = images.open(spec, false);
        assertArrayEquals(a, await(again.read(0, 65536)).toArray());
        BlockBackend raw = images.open(rbd(image), true);
        long header = raw.size() - again.size();
        assertNotEquals(ByteString.fromArray(a), await(raw.read(header, 65536)));

        Files.writeString(pass, "wrong");
        BackendException wrong = assertThrows(BackendException.class, () -> images.open(spec, false));
        assertTrue(wrong.getMessage().contains("encryption"), wrong.getMessage());
    }
}
