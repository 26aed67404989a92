package io.rbdnbd.it;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Requests of the advertised maximum block size (32 MiB by default), as qemu and fio send them
 * for big sequential I/O: the server must keep serving them, one after another and on several
 * connections at once, without running out of (direct) memory.
 */
class LargeRequestsTest {
    @TempDir
    Path dir;

    private static long maxBlock(ServerProcess s) {
        String json = Commands.ok(Commands.nbdinfo(), "--json", s.uri()).stdout();
        long max = Long.parseLong(NbdInfoTest.jsonField(json, "block_size_maximum"));
        assertTrue(max >= 1 << 20, "block_size_maximum " + max);
        return max;
    }

    private static void assertAlive(ServerProcess s, String after) {
        if (!s.isAlive()) {
            fail("the server died " + after + "\n" + s.describe());
        }
        Commands.Result r = Commands.run(Commands.nbdinfo(), "--size", s.uri());
        if (r.exitCode() != 0) {
            fail("the server stopped serving " + after + "\n" + r.describe() + "\n" + s.describe());
        }
    }

    @Test
    void maximumSizeReadsOneAfterAnotherOnOneConnection() {
        try (ServerProcess s = ServerProcess.start("memory:1G", "--socket", dir.resolve("big.sock").toString())) {
            long max = maxBlock(s);
            List<String> cmds = new ArrayList<>();
            cmds.add("write -P 0x61 0 " + max);
            for (int i = 0; i < 16; i++) {
                cmds.add("read -P " + (i == 0 ? "0x61" : "0") + " " + (i * max) + " " + max);
            }
            Commands.Result r = Commands.qemuIo(s.uri(), false, cmds.toArray(String[]::new));
            if (r.exitCode() != 0 || r.output().contains("failed")) {
                fail("16 reads of " + max + " bytes (the advertised maximum) one after another\n" + r.describe()
                        + "\n" + s.describe());
            }
            assertAlive(s, "after 16 reads of " + max + " bytes");
            s.stop();
        }
    }

    @Test
    void maximumSizeReadsOnSeparateConnections() {
        try (ServerProcess s = ServerProcess.start("memory:1G", "--socket", dir.resolve("seq.sock").toString())) {
            long max = maxBlock(s);
            for (int i = 0; i < 12; i++) {
                Commands.Result r = Commands.qemuIo(s.uri(), true, "read -P 0 " + (i * max) + " " + max);
                if (r.exitCode() != 0 || r.output().contains("failed")) {
                    fail("connection #" + (i + 1) + ": one read of " + max + " bytes\n" + r.describe() + "\n"
                            + s.describe());
                }
            }
            assertAlive(s, "after 12 connections each reading " + max + " bytes once");
            s.stop();
        }
    }

    @Test
    void maximumSizeWritesAndReadsOnFourConnectionsVerify() {
        try (ServerProcess s = ServerProcess.start("memory:1G", "--socket", dir.resolve("fio.sock").toString())) {
            long max = maxBlock(s);
            Commands.Result r = Commands.run(Commands.DEFAULT_TIMEOUT, dir, Commands.fio(), "--name=big",
                    "--ioengine=nbd", "--uri=" + s.uri(), "--rw=write", "--bs=" + max, "--iodepth=2",
                    "--numjobs=4", "--size=" + (4 * max), "--offset_increment=" + (4 * max),
                    "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_state_save=0",
                    "--output-format=json");
            if (r.exitCode() != 0) {
                fail("fio: 4 connections, " + max + "-byte writes and verifying reads\n" + r.describe() + "\n"
                        + s.describe());
            }
            List<FioTest.Job> jobs = FioTest.jobs(r.stdout());
            assertEquals(4, jobs.size(), r.describe());
            for (FioTest.Job j : jobs) {
                assertEquals(0, j.error(), r.describe());
                assertEquals(4 * max, j.readBytes(), "verified bytes\n" + r.describe());
            }
            assertAlive(s, "after fio");
            s.stop();
        }
    }
}
