package io.rbdnbd.engine.quiesce;

import com.typesafe.config.Config;
import io.rbdnbd.engine.backend.BackendException;
import io.rbdnbd.engine.backend.QuiesceHandler;
import io.rbdnbd.nativeio.Errno;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The quiesce hook of one device, run as Ceph's rbd-nbd runs it: {@code HOOK DEVICE quiesce}
 * before a snapshot of the image, {@code HOOK DEVICE unquiesce} after it (Ceph's default hook
 * freezes and thaws the filesystems mounted from the device). Register it with
 * {@code backend.watchQuiesce(new QuiesceHook(QuiesceHook.Settings.from(config), "/dev/nbd0"))}.
 *
 * <p>The hook is run the way a shell runs a command ({@code /bin/sh -c 'exec "$0" "$@"' HOOK
 * DEVICE COMMAND}), as Ceph's {@code execvp} does: a script without a {@code #!} line runs under
 * {@code /bin/sh} rather than failing with ENOEXEC, and a hook without a slash is looked up on
 * PATH. Its output goes to the log line by line; stdin is {@code /dev/null}.
 *
 * <p>A run fails, with a {@link BackendException} naming the command, when the hook is missing
 * (ENOENT) or not executable (EACCES), exits non-zero (the exit status is the errno, as in Ceph,
 * whose snapshot then fails with it; the message quotes the last line on stderr), or outlives
 * the timeout (ETIMEDOUT: the hook and its children are killed; whatever it had done stays done).
 */
public final class QuiesceHook implements QuiesceHandler {
    private static final Logger log = LoggerFactory.getLogger(QuiesceHook.class);
    /** After the hook exits, how long its output may still take to arrive (a child may hold the pipes). */
    private static final Duration OUTPUT_GRACE = Duration.ofSeconds(1);

    /**
     * The {@code rbdnbd.quiesce} section of the configuration (documented in engine's reference.conf).
     *
     * @param hook    the program to run (Ceph's {@code --quiesce-hook})
     * @param timeout how long one run may take before it is killed and fails
     */
    public record Settings(String hook, Duration timeout) {
        public Settings {
            if (hook == null || hook.isBlank()) {
                throw new IllegalArgumentException("the quiesce hook must name a program");
            }
            if (timeout.isNegative() || timeout.isZero()) {
                throw new IllegalArgumentException("the quiesce hook timeout must be positive: " + timeout);
            }
        }

        public static Settings from(Config root) {
            Config c = root.getConfig("rbdnbd.quiesce");
            return new Settings(c.getString("hook"), c.getDuration("timeout"));
        }

        /** The same timeout with another hook, e.g. from {@code --quiesce-hook}. */
        public Settings withHook(String other) {
            return new Settings(other, timeout);
        }
    }

    private final Settings settings;
    private final String device;

    /** @param device the device's path, the hook's first argument (e.g. {@code /dev/nbd0}) */
    public QuiesceHook(Settings settings, String device) {
        this.settings = settings;
        this.device = device;
    }

    @Override
    public CompletionStage<Void> quiesce() {
        return run("quiesce");
    }

    @Override
    public CompletionStage<Void> unquiesce() {
        return run("unquiesce");
    }

    /** Runs {@code HOOK DEVICE command}; completes when it has exited 0, fails otherwise (see the class comment). */
    public CompletionStage<Void> run(String command) {
        String what = "quiesce hook `" + settings.hook() + " " + device + " " + command + "`";
        String hook = settings.hook();
        if (hook.contains("/")) { // else the shell searches PATH, and says so when nothing is found
            Path p = Path.of(hook);
            if (!Files.exists(p)) {
                return CompletableFuture.failedFuture(new BackendException(Errno.ENOENT, what
                        + " cannot run: " + hook + " does not exist"));
            }
            if (Files.isDirectory(p) || !Files.isExecutable(p)) {
                return CompletableFuture.failedFuture(new BackendException(Errno.EACCES, what
                        + " cannot run: " + hook + " is not an executable file"));
            }
        }
        ProcessBuilder pb = new ProcessBuilder(List.of("/bin/sh", "-c", "exec \"$0\" \"$@\"", hook, device, command))
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        Process p;
        try {
            p = pb.start();
        } catch (IOException e) {
            return CompletableFuture.failedFuture(new BackendException(Errno.EIO, what + " cannot run: " + e.getMessage(), e));
        }
        log.info("running {} (pid {})", what, p.pid());
        AtomicReference<String> lastError = new AtomicReference<>();
        CompletableFuture<Void> out = drain(p.getInputStream(), what, "stdout", null);
        CompletableFuture<Void> err = drain(p.getErrorStream(), what, "stderr", lastError);
        CompletableFuture<Void> result = new CompletableFuture<>();
        p.onExit().orTimeout(settings.timeout().toNanos(), TimeUnit.NANOSECONDS).whenComplete((exited, t) -> {
            boolean timedOut = t instanceof TimeoutException;
            if (timedOut) {
                kill(p);
            }
            // the exit is known; its last words may still be in the pipes
            CompletableFuture.allOf(out, err, p.onExit())
                    .completeOnTimeout(null, OUTPUT_GRACE.toNanos(), TimeUnit.NANOSECONDS)
                    .whenComplete((v, ignored) -> {
                        if (timedOut) {
                            result.completeExceptionally(new BackendException(Errno.ETIMEDOUT, what
                                    + " did not finish within " + settings.timeout().toMillis() + " ms; killed"
                                    + lastLine(lastError)));
                        } else if (t != null) {
                            result.completeExceptionally(new BackendException(Errno.EIO, what + " failed: " + t, t));
                        } else if (p.exitValue() != 0) {
                            result.completeExceptionally(new BackendException(errno(p.exitValue()), what + " exited "
                                    + p.exitValue() + lastLine(lastError)));
                        } else {
                            log.info("{} succeeded", what);
                            result.complete(null);
                        }
                    });
        });
        return result;
    }

    /** Sh says 126 for "cannot execute" and 127 for "not found"; other statuses pass as Ceph passes them. */
    private static int errno(int exitStatus) {
        return switch (exitStatus) {
            case 126 -> Errno.EACCES;
            case 127 -> Errno.ENOENT;
            default -> exitStatus > 0 && exitStatus < 126 ? exitStatus : Errno.EIO;
        };
    }

    private static String lastLine(AtomicReference<String> lastError) {
        String line = lastError.get();
        return line == null ? " (nothing on stderr)" : ": " + line;
    }

    /** The hook and what it started; their pids are taken before the hook dies and they are orphaned. */
    private static void kill(Process p) {
        List<ProcessHandle> children = p.descendants().toList();
        p.destroyForcibly();
        children.forEach(ProcessHandle::destroyForcibly);
    }

    /**
     * Logs a stream of the hook line by line on a thread of its own, until its end; keeps the last
     * non-blank line in {@code last} when given.
     */
    private static CompletableFuture<Void> drain(InputStream in, String what, String stream, AtomicReference<String> last) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    log.info("{} {}: {}", what, stream, line);
                    if (last != null && !line.isBlank()) {
                        last.set(line.strip());
                    }
                }
            } catch (IOException e) {
                log.debug("{}: reading its {} failed: {}", what, stream, e.toString());
            } finally {
                done.complete(null);
            }
        }, "quiesce-hook-" + stream);
        t.setDaemon(true);
        t.start();
        return done;
    }

    @Override
    public String toString() {
        return "QuiesceHook[" + settings.hook() + " " + device + "]";
    }
}
