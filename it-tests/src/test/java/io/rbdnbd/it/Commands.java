package io.rbdnbd.it;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * Runs external programs (the NBD clients under test) with a timeout. Output goes to temporary
 * files, never pipes, so a chatty program cannot block on a full pipe.
 */
public final class Commands {
    /** Generous default: the machine is small and shared with other builds. */
    static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(120);
    /** Failure messages quote at most this much of a program's output (its end). */
    private static final int QUOTE_CHARS = 6000;

    private Commands() {
    }

    /** What one command did; {@code timedOut} means it was killed after its timeout (exit code -1). */
    public record Result(List<String> command, int exitCode, String stdout, String stderr, Duration took,
                         boolean timedOut) {
        public boolean succeeded() {
            return !timedOut && exitCode == 0;
        }

        /** Everything the program said, for failure messages. */
        public String output() {
            return stdout + (stderr.isEmpty() ? "" : (stdout.isEmpty() ? "" : "\n") + stderr);
        }

        public String describe() {
            String how = timedOut ? "did not finish within " + took.toSeconds() + " s (killed)"
                    : "exited " + exitCode + " after " + took.toMillis() + " ms";
            return "`" + String.join(" ", command) + "` " + how + "\n"
                    + "--- stdout ---\n" + quote(stdout) + "\n--- stderr ---\n" + quote(stderr);
        }
    }

    static String quote(String s) {
        return s.length() <= QUOTE_CHARS ? s : "[... " + (s.length() - QUOTE_CHARS) + " chars cut ...]"
                + s.substring(s.length() - QUOTE_CHARS);
    }

    /** Runs the command in {@code dir} (or the current directory when null); fails on timeout. */
    static Result run(Duration timeout, Path dir, String... command) {
        return run(timeout, dir, java.util.Map.of(), command);
    }

    /** {@link #run(String...)} with extra environment variables. */
    static Result runWithEnv(java.util.Map<String, String> env, String... command) {
        return run(DEFAULT_TIMEOUT, null, env, command);
    }

    static Result run(Duration timeout, Path dir, java.util.Map<String, String> env, String... command) {
        Result r = execute(timeout, dir, env, command);
        if (r.timedOut()) {
            fail(r.describe());
        }
        return r;
    }

    /**
     * Runs the command without judging it: a timeout kills it and its children and is reported in
     * the result (fault tests expect some commands to hang).
     */
    public static Result execute(Duration timeout, Path dir, java.util.Map<String, String> env, String... command) {
        Path out = null;
        Path err = null;
        try {
            out = Files.createTempFile("it-cmd-", ".out");
            err = Files.createTempFile("it-cmd-", ".err");
            ProcessBuilder pb = new ProcessBuilder(command)
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                    .redirectOutput(out.toFile())
                    .redirectError(err.toFile());
            if (dir != null) {
                pb.directory(dir.toFile());
            }
            pb.environment().putAll(env);
            long start = System.nanoTime();
            Process p = pb.start();
            boolean done = p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
            if (!done) {
                p.descendants().forEach(ProcessHandle::destroyForcibly);
                p.destroyForcibly();
                p.waitFor(10, TimeUnit.SECONDS);
            }
            Duration took = Duration.ofNanos(System.nanoTime() - start);
            return new Result(List.of(command), done ? p.exitValue() : -1, Files.readString(out, StandardCharsets.UTF_8),
                    Files.readString(err, StandardCharsets.UTF_8), took, !done);
        } catch (IOException e) {
            throw new AssertionError("cannot run " + Arrays.toString(command) + ": " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted running " + Arrays.toString(command), e);
        } finally {
            deleteQuietly(out);
            deleteQuietly(err);
        }
    }

    static Result run(String... command) {
        return run(DEFAULT_TIMEOUT, null, command);
    }

    /** Runs the command and fails, quoting its output, unless it exits 0. */
    static Result ok(Duration timeout, Path dir, String... command) {
        Result r = run(timeout, dir, command);
        if (r.exitCode() != 0) {
            fail(r.describe());
        }
        return r;
    }

    static Result ok(String... command) {
        return ok(DEFAULT_TIMEOUT, null, command);
    }

    /**
     * The absolute path of an installed client program. A missing client fails the test (never
     * skips it), naming the Debian package that provides it.
     */
    static String require(String program, String debianPackage) {
        String path = System.getenv("PATH");
        if (path != null) {
            for (String d : path.split(File.pathSeparator)) {
                if (d.isEmpty()) {
                    continue;
                }
                Path candidate = Path.of(d, program);
                if (Files.isRegularFile(candidate) && Files.isExecutable(candidate)) {
                    return candidate.toString();
                }
            }
        }
        fail("'" + program + "' is not installed (not found on PATH=" + path + "): install the Debian package '"
                + debianPackage + "' (apt-get install " + debianPackage + ")");
        return null; // unreachable
    }

    static String nbdinfo() {
        return require("nbdinfo", "libnbd-bin");
    }

    static String nbdcopy() {
        return require("nbdcopy", "libnbd-bin");
    }

    static String qemuImg() {
        return require("qemu-img", "qemu-utils");
    }

    static String qemuIo() {
        return require("qemu-io", "qemu-utils");
    }

    static String fio() {
        return require("fio", "fio");
    }

    /** {@code qemu-io -f raw [-r] -c CMD ... TARGET}, without judging the outcome. */
    static Result qemuIo(String target, boolean readOnly, String... commands) {
        List<String> cmd = new java.util.ArrayList<>(List.of(qemuIo(), "-f", "raw"));
        if (readOnly) {
            cmd.add("-r");
        }
        for (String c : commands) {
            cmd.add("-c");
            cmd.add(c);
        }
        cmd.add(target);
        return run(DEFAULT_TIMEOUT, null, cmd.toArray(String[]::new));
    }

    /**
     * Runs qemu-io commands against the target and fails (quoting qemu-io and the server's stderr)
     * unless every one succeeded: exit 0 and no "... failed" line (pattern mismatches included).
     */
    static Result qemuIoOk(ServerProcess server, String target, String... commands) {
        Result r = qemuIo(target, false, commands);
        if (r.exitCode() != 0 || r.output().contains("failed")) {
            fail(r.describe() + (server == null ? "" : "\n" + server.describe()));
        }
        return r;
    }

    /** Bytes the file occupies on disk (st_blocks * 512), which is small for a sparse file. */
    static long allocatedBytes(Path file) {
        Result r = ok("stat", "-c", "%b %B", file.toString());
        String[] parts = r.stdout().trim().split("\\s+");
        return Long.parseLong(parts[0]) * Long.parseLong(parts[1]);
    }

    private static void deleteQuietly(Path p) {
        if (p != null) {
            try {
                Files.deleteIfExists(p);
            } catch (IOException ignored) {
                // a temporary file; the OS cleans /tmp eventually
            }
        }
    }
}
