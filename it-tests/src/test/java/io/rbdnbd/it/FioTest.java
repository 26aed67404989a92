package io.rbdnbd.it;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** fio's nbd engine (libnbd) with crc32c verification: deep queues on one connection, and four connections. */
class FioTest {
    private static final long MIB = 1 << 20;

    @TempDir
    Path dir;

    record Job(String name, int error, long readBytes, long writeBytes) {
    }

    private static final Pattern JOB = Pattern.compile(
            "\"jobname\"\\s*:\\s*\"([^\"]*)\".*?\"error\"\\s*:\\s*(\\d+).*?\"read\"\\s*:\\s*\\{\\s*\"io_bytes\"\\s*:\\s*(\\d+)"
                    + ".*?\"write\"\\s*:\\s*\\{\\s*\"io_bytes\"\\s*:\\s*(\\d+)", Pattern.DOTALL);

    static List<Job> jobs(String json) {
        List<Job> jobs = new ArrayList<>();
        Matcher m = JOB.matcher(json);
        while (m.find()) {
            jobs.add(new Job(m.group(1), Integer.parseInt(m.group(2)), Long.parseLong(m.group(3)),
                    Long.parseLong(m.group(4))));
        }
        return jobs;
    }

    /** Runs fio with the nbd engine and JSON output; fails on a non-zero exit or any verify complaint. */
    private Commands.Result fio(ServerProcess s, String... options) {
        List<String> cmd = new ArrayList<>(List.of(Commands.fio(), "--ioengine=nbd", "--output-format=json",
                "--verify_state_save=0", "--exitall_on_error=1"));
        cmd.addAll(List.of(options));
        Commands.Result r = Commands.run(Commands.DEFAULT_TIMEOUT, dir, cmd.toArray(String[]::new));
        if (r.exitCode() != 0) {
            if (r.output().contains("engine nbd not loadable") || r.output().contains("failed to load engine")) {
                fail("this fio has no nbd ioengine: install Debian's 'fio' package (built with libnbd)\n" + r.describe());
            }
            fail(r.describe() + "\n" + s.describe());
        }
        String lower = r.stderr().toLowerCase();
        assertFalse(lower.contains("verify") || lower.contains("bad magic") || lower.contains("crc32c"),
                "fio reported verify trouble\n" + r.describe());
        return r;
    }

    @Test
    void depth256OnOneConnectionVerifies() {
        try (ServerProcess s = ServerProcess.start("memory:256M", "--socket", dir.resolve("fio.sock").toString())) {
            long size = 128 * MIB;
            Commands.Result r = fio(s, "--name=depth256", "--uri=" + s.uri(), "--rw=randwrite", "--bsrange=4k-64k",
                    "--iodepth=256", "--size=" + size, "--verify=crc32c", "--verify_fatal=1", "--do_verify=1");
            List<Job> jobs = jobs(r.stdout());
            assertEquals(1, jobs.size(), "one job\n" + r.describe());
            Job j = jobs.get(0);
            assertEquals(0, j.error(), "fio job error\n" + r.describe());
            assertEquals(size, j.writeBytes(), "bytes written\n" + r.describe());
            assertEquals(size, j.readBytes(), "bytes read back and verified\n" + r.describe());
            s.stop();
        }
    }

    @Test
    void fourJobsOnTheirOwnConnectionsAndRanges() {
        Path img = dir.resolve("fio.img");
        try (ServerProcess s = ServerProcess.start("file:" + img, "--size", "256M", "--listen", "127.0.0.1:0")) {
            long size = 48 * MIB;
            String[] job = {"--name=four", "--uri=" + s.uri(), "--numjobs=4", "--size=" + size,
                    "--offset_increment=64M", "--rw=randwrite", "--bsrange=4k-128k", "--iodepth=64",
                    "--verify=crc32c", "--verify_fatal=1", "--randseed=1234"};
            Commands.Result r = fio(s, NbdInfoTest.concat(job, new String[]{"--do_verify=1"}));
            List<Job> jobs = jobs(r.stdout());
            assertEquals(4, jobs.size(), "four jobs\n" + r.describe());
            for (Job j : jobs) {
                assertEquals(0, j.error(), "fio job error\n" + r.describe());
                assertEquals(size, j.writeBytes(), "bytes written per job\n" + r.describe());
                assertEquals(size, j.readBytes(), "bytes verified per job\n" + r.describe());
            }

            // Four new connections verify what the first four wrote (same seed: same blocks).
            Commands.Result again = fio(s, NbdInfoTest.concat(job, new String[]{"--verify_only"}));
            List<Job> verified = jobs(again.stdout());
            assertEquals(4, verified.size(), again.describe());
            for (Job j : verified) {
                assertEquals(0, j.error(), "verify-only job error\n" + again.describe());
                assertTrue(j.readBytes() >= size, "verify-only read everything back\n" + again.describe());
            }
            s.stop();
        }
        // The ranges between the four jobs' ranges were never written: the file stays sparse there.
        long allocated = Commands.allocatedBytes(img);
        assertTrue(allocated <= 4 * 48 * MIB + 4 * MIB,
                "only the four 48 MiB ranges are allocated, but " + allocated + " bytes are");
    }
}
