package io.rbdnbd.it;

import io.rbdnbd.it.ceph.CephCluster;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Ceph misbehaving under a live export: our client blocklisted, the OSD stopped and started.
 * Acknowledged writes must survive, and I/O must carry on once Ceph does.
 */
class RbdFaultIT {
    private static CephCluster ceph;

    @TempDir
    Path dir;

    private final List<String> images = new ArrayList<>();
    private final List<String> blocklisted = new ArrayList<>();

    @BeforeAll
    static void cluster() {
        ceph = CephCluster.shared();
    }

    @AfterEach
    void cleanUp() {
        for (String addr : blocklisted) {
            ceph.ceph("osd", "blocklist", "rm", addr);
        }
        images.forEach(ceph::removeImage);
    }

    /** The address of the one client watching the image: ours. */
    private static String watcherAddress(String image) {
        String status = ceph.rbd("status", "--format", "json", image);
        Matcher m = Pattern.compile("\"address\":\"([^\"]+)\"").matcher(status);
        assertTrue(m.find(), "no watcher on " + image + ": " + status);
        String addr = m.group(1);
        assertFalse(m.find(), "more than one watcher on " + image + ": " + status);
        return addr;
    }

    @Test
    void aBlocklistedClientReopensTheImageAndCarriesOn() {
        String img = ceph.createImage("blocklist", "32M");
        images.add(img);
        try (ServerProcess server = ServerProcess.start(ceph.env(), img, "--socket", dir.resolve("b.sock").toString())) {
            Commands.qemuIoOk(server, server.unixUri(), "write -P 0x41 0 4M", "flush");
            String addr = watcherAddress(img);
            ceph.ceph("osd", "blocklist", "add", addr);
            blocklisted.add(addr);

            // the first requests after the blocklisting may fail; within the reopen backoff they must work again
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
            Commands.Result r;
            do {
                r = Commands.qemuIo(server.unixUri(), false, "write -P 0x42 8M 1M", "flush");
                if (r.exitCode() == 0 && !r.output().contains("failed")) {
                    break;
                }
                sleepMs(500);
            } while (System.nanoTime() < deadline);
            assertTrue(r.exitCode() == 0 && !r.output().contains("failed"),
                    "no write succeeded within 90 s of the blocklisting\n" + r.describe() + "\n" + server.describe());
            assertFalse(watcherAddress(img).equals(addr), "the image is watched by the blocklisted client still");
            Commands.qemuIoOk(server, server.unixUri(), "read -P 0x41 0 4M", "read -P 0x42 8M 1M");
            assertTrue(server.stderr().contains("reopened"), "no reopen in the log\n" + server.describe());
            server.stop();
        }
    }

    @Test
    void fioVerifyPassesAcrossAnOsdStopAndStart() throws Exception {
        String img = ceph.createImage("osd", "64M");
        images.add(img);
        try (ServerProcess server = ServerProcess.start(ceph.env(), img, "--socket", dir.resolve("o.sock").toString())) {
            Path out = dir.resolve("fio.json");
            // 8192 random 4 KiB writes at 1000/s: about 8 s of writing, then the verifying read pass
            List<String> cmd = List.of(Commands.fio(), "--name=osd", "--ioengine=nbd", "--uri=" + server.uri(),
                    "--rw=randwrite", "--bs=4k", "--size=32M", "--iodepth=32", "--rate_iops=1000",
                    "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_state_save=0",
                    "--output-format=json", "--output=" + out);
            Process fio = new ProcessBuilder(cmd).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                    .redirectErrorStream(true).redirectOutput(dir.resolve("fio.log").toFile()).start();
            try {
                sleepMs(2000);
                ceph.stopOsd();
                sleepMs(5000);
                assertTrue(fio.isAlive(), "fio ended while the OSD was down: " + Files.readString(dir.resolve("fio.log")));
                ceph.startOsd();
                if (!fio.waitFor(180, TimeUnit.SECONDS)) {
                    fail("fio did not finish within 180 s of the OSD coming back\n" + server.describe());
                }
            } finally {
                fio.destroyForcibly();
                ceph.startOsd(); // idempotent: leaves the cluster whole for the next test
            }
            String log = Files.readString(dir.resolve("fio.log"));
            String json = Files.exists(out) ? Files.readString(out) : "";
            assertEquals(0, fio.exitValue(), "fio failed\n" + log + json + "\n" + server.describe());
            List<FioTest.Job> jobs = FioTest.jobs(json.substring(Math.max(0, json.indexOf('{'))));
            assertEquals(1, jobs.size(), json);
            assertEquals(0, jobs.get(0).error(), json);
            assertTrue(jobs.get(0).readBytes() >= 32L << 20, "the verify pass read everything back: " + json);
            server.stop();
        }
    }

    private static void sleepMs(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }
}
