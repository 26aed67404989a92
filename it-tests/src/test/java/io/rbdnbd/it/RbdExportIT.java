package io.rbdnbd.it;

import io.rbdnbd.it.ceph.CephCluster;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The NBD export on a real RBD image, checked against what Ceph's own tools see. */
class RbdExportIT {
    private static final int M = 1 << 20;
    private static CephCluster ceph;

    @TempDir
    Path dir;

    private final List<String> images = new ArrayList<>();

    @BeforeAll
    static void cluster() {
        ceph = CephCluster.shared();
    }

    @AfterEach
    void removeImages() {
        images.forEach(ceph::removeImage);
    }

    private String image(String name, String size) {
        String spec = ceph.createImage(name, size);
        images.add(spec);
        return spec;
    }

    private ServerProcess serve(String... args) {
        List<String> a = new ArrayList<>(List.of(args));
        a.addAll(List.of("--socket", dir.resolve("s.sock").toString()));
        return ServerProcess.start(ceph.env(), a.toArray(String[]::new));
    }

    private byte[] rbdExport(String image) throws IOException {
        Path out = dir.resolve("export-" + System.nanoTime() + ".raw");
        ceph.rbd("export", "--no-progress", image, out.toString());
        byte[] b = Files.readAllBytes(out);
        Files.delete(out);
        return b;
    }

    private byte[] nbdCopy(ServerProcess server) throws IOException {
        Path out = dir.resolve("copy-" + System.nanoTime() + ".raw");
        Commands.ok(Commands.nbdcopy(), server.unixUri(), out.toString());
        byte[] b = Files.readAllBytes(out);
        Files.delete(out);
        return b;
    }

    private long rbdUsed(String image) {
        String json = ceph.rbd("du", "--format", "json", image);
        Matcher m = Pattern.compile("\"used_size\":(\\d+)").matcher(json);
        assertTrue(m.find(), json);
        return Long.parseLong(m.group(1));
    }

    @Test
    void writesThroughTheExportIncludingFuaAndWriteZeroesAreWhatRbdExportSees() throws IOException {
        String img = image("writes", "64M");
        try (ServerProcess server = serve(img)) {
            Commands.qemuIoOk(server, server.unixUri(),
                    "write -P 0x11 0 1M",
                    "write -f -P 0x22 5M 64k",          // FUA
                    "write -P 0x33 9M 3M",               // crosses an object boundary at 8M... 12M
                    "write -z 9M 512k",                  // write-zeroes
                    "write -P 0x44 63M 1M",
                    "flush");
            byte[] viaExport = nbdCopy(server);
            server.stop();
            byte[] viaRbd = rbdExport(img);
            assertEquals(64 * M, viaRbd.length);
            assertArrayEquals(viaRbd, viaExport, "the export and `rbd export` disagree");
            assertEquals(0x22, viaRbd[5 * M + 100]);
            assertEquals(0, viaRbd[9 * M + 1000]);
            assertEquals(0x33, viaRbd[9 * M + 512 * 1024]);
            assertEquals(0x44, viaRbd[64 * M - 1]);
        }
    }

    @Test
    void rbdImportedDataReadsBackEqualAndCopiesStaySparse() throws IOException {
        byte[] data = new byte[48 * M];
        Random rnd = new Random(42);
        for (int at : new int[]{0, 13 * M, 40 * M}) {  // three 2 MiB islands in 48 MiB of zeroes
            byte[] island = new byte[2 * M];
            rnd.nextBytes(island);
            System.arraycopy(island, 0, data, at, island.length);
        }
        Path src = dir.resolve("src.raw");
        Files.write(src, data);
        String img = "rbd/it-import-" + Long.toHexString(System.nanoTime());
        ceph.rbd("import", "--no-progress", src.toString(), img);
        images.add(img);
        try (ServerProcess server = serve(img, "--read-only")) {
            assertArrayEquals(data, nbdCopy(server));
            Path qcow2 = dir.resolve("copy.qcow2");
            Commands.ok(Commands.qemuImg(), "convert", "-f", "raw", "-O", "qcow2", server.unixUri(), qcow2.toString());
            long allocated = Commands.allocatedBytes(qcow2);
            // block status is per 4 MiB object: three islands touch at most 5 objects
            assertTrue(allocated <= 21L * M, "qemu-img convert through the export did not stay sparse: "
                    + allocated + " bytes allocated");
            Commands.ok(Commands.qemuImg(), "compare", "-f", "raw", "-F", "qcow2", src.toString(), qcow2.toString());
            server.stop();
        }
    }

    @Test
    void trimLowersTheUsedSizeRbdDuReports() {
        String img = image("trim", "64M");
        try (ServerProcess server = serve(img)) {
            Commands.qemuIoOk(server, server.unixUri(), "write -P 0x5a 0 32M", "flush");
            long before = rbdUsed(img);
            assertTrue(before >= 32L * M, "rbd du after 32 MiB written: " + before);
            Commands.qemuIoOk(server, server.unixUri(), "discard 0 24M", "flush");
            long after = rbdUsed(img);
            assertTrue(after <= before - 24L * M, "rbd du did not drop after trimming 24 MiB: " + before + " -> " + after);
            Commands.qemuIoOk(server, server.unixUri(), "read -P 0 0 24M", "read -P 0x5a 24M 8M");
            server.stop();
        }
    }

    @Test
    void aSnapshotIsServedReadOnlyAndWritesGetEperm() throws IOException {
        String img = image("snap", "16M");
        try (ServerProcess rw = serve(img)) {
            Commands.qemuIoOk(rw, rw.unixUri(), "write -P 0x77 0 1M", "flush");
            ceph.rbd("snap", "create", img + "@before");
            Commands.qemuIoOk(rw, rw.unixUri(), "write -P 0x78 0 1M", "flush");
            rw.stop();
        }
        try (ServerProcess snap = ServerProcess.start(ceph.env(), img + "@before", "--socket",
                dir.resolve("snap.sock").toString());
             RawNbdClient c = RawNbdClient.unix(snap.socketPath())) {
            RawNbdClient.Export e = c.handshake();
            assertEquals(RawNbdClient.FLAG_READ_ONLY, e.flags() & RawNbdClient.FLAG_READ_ONLY, "NBD_FLAG_READ_ONLY");
            c.writeData(1, 0, new byte[4096]);
            assertEquals(1, c.expectReply(1).error(), "WRITE to a snapshot: EPERM\n" + snap.describe());
            c.read(2, 0, 4096);
            RawNbdClient.Reply r = c.expectReply(2);
            assertEquals(0, r.error());
            assertEquals(0x77, r.data()[0] & 0xff, "the snapshot holds what was there when it was taken");
        } finally {
            ceph.rbd("snap", "purge", "--no-progress", img);
        }
    }

    @Test
    void aResizeReachesNewConnections() {
        String img = image("resize", "32M");
        try (ServerProcess server = serve(img)) {
            assertEquals(String.valueOf(32 * M), Commands.ok(Commands.nbdinfo(), "--size", server.unixUri()).stdout().trim());
            ceph.rbd("resize", "--size", "48M", img);
            String size = "";
            for (int i = 0; i < 50 && !size.equals(String.valueOf(48 * M)); i++) {
                size = Commands.ok(Commands.nbdinfo(), "--size", server.unixUri()).stdout().trim();
                sleep(100);
            }
            assertEquals(String.valueOf(48 * M), size, "nbdinfo after rbd resize to 48M");
            Commands.qemuIoOk(server, server.unixUri(), "write -P 0x66 47M 1M", "read -P 0x66 47M 1M");
            server.stop();
        }
    }

    @Test
    void wrongPoolImageKeyringAndMonitorAreClearErrors() throws IOException {
        String img = image("errors", "4M");
        Path noKeyring = dir.resolve("absent.keyring");
        record Case(String expected, String... args) {
        }
        for (Case c : List.of(
                new Case("pool 'nopool' does not exist", "nopool/x"),
                new Case("image 'rbd/absent' does not exist", "rbd/absent"),
                new Case("connect to the ceph cluster", img, "--keyring", noKeyring.toString()),
                new Case("ETIMEDOUT", img, "-m", "v1:127.0.0.1:1"))) {
            List<String> cmd = new ArrayList<>(ServerProcess.launcherCommand("serve"));
            cmd.addAll(List.of(c.args()));
            cmd.addAll(List.of("--socket", dir.resolve("err.sock").toString()));
            Commands.Result r = Commands.runWithEnv(Map.of("CEPH_CONF", ceph.conf().toString(),
                    "RBDNBD_JAVA_OPTS", "-Drbdnbd.ceph.connect-timeout=3s"), cmd.toArray(String[]::new));
            assertEquals(1, r.exitCode(), r.describe());
            assertTrue(r.stderr().contains(c.expected()), "expected '" + c.expected() + "' in\n" + r.describe());
            assertTrue(r.took().toSeconds() < 60, r.describe());
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
