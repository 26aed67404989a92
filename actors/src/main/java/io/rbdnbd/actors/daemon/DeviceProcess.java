package io.rbdnbd.actors.daemon;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * The process that stands for one mapped device, as Ceph's one {@code rbd-nbd} process per device
 * does for the tools and operators that rely on it: its pid is the device's id in
 * {@code list-mapped}, {@code ps -C rbd-nbd} shows it while the device is mapped, it is gone once
 * {@code unmap} returns, SIGTERM to it unmaps that device and SIGKILL of it drops that device's
 * server (netlink devices wait for {@code attach}). The daemon serves the device; this process
 * only stands for it.
 *
 * <p>It is GNU {@code tail --pid=DAEMON -f /dev/null} run through a link named {@code rbd-nbd}
 * (the kernel names a process after the file it executes, so {@code ps -C rbd-nbd} matches): about
 * 1 MiB resident, no threads, reading nothing. It cannot outlive the device: the daemon stops it
 * before it reports the device gone, and {@code --pid} ends it within a second of the daemon's
 * own end, however that comes (SIGKILL included). It cannot leak: one per mapped device, started
 * when the device is ready and stopped with it.
 */
public final class DeviceProcess implements AutoCloseable {
    /** Exit value a process killed by signal N shows to Java: 128 + N. */
    static final int BY_SIGTERM = 128 + 15;
    static final int BY_SIGINT = 128 + 2;

    /** Starts the process standing for one device. */
    @FunctionalInterface
    public interface Starter {
        DeviceProcess start(String device) throws IOException;
    }

    /** No processes: the daemon's pid stands for every device. */
    public static final Starter NONE = device -> null;

    private final Process process;
    private final String device;
    private volatile boolean stopping;

    private DeviceProcess(Process process, String device) {
        this.process = process;
        this.device = device;
    }

    /**
     * Starts processes named {@code rbd-nbd} from a link to {@code tail} in {@code directory/bin},
     * each watching this process.
     */
    public static Starter in(Path directory) {
        return device -> {
            Path bin = Files.createDirectories(directory.resolve("bin"));
            Path link = bin.resolve("rbd-nbd");
            Path tail = tail();
            if (!Files.isSymbolicLink(link) || !Files.readSymbolicLink(link).equals(tail)) {
                Files.deleteIfExists(link);
                Files.createSymbolicLink(link, tail);
            }
            // setsid (which execs, no fork: the child is no group leader): a Ctrl-C or SIGHUP meant
            // for the daemon's terminal must not reach the device processes as an unmap
            Process p = new ProcessBuilder(List.of(setsid().toString(), link.toString(),
                    "--pid=" + ProcessHandle.current().pid(), "-f", "/dev/null"))
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                    .redirectError(ProcessBuilder.Redirect.DISCARD)
                    .start();
            awaitExec(p);
            return new DeviceProcess(p, device);
        };
    }

    /**
     * Waits (at most 2 s) until setsid has exec'd the link, so that the pid map answers with is
     * already named rbd-nbd (ps -C rbd-nbd), not setsid.
     */
    private static void awaitExec(Process p) throws IOException {
        Path comm = Path.of("/proc", String.valueOf(p.pid()), "comm");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
        while (System.nanoTime() < deadline) {
            try {
                if (Files.readString(comm).trim().equals("rbd-nbd")) {
                    return;
                }
            } catch (IOException e) {
                break; // the process is gone already
            }
            try {
                Thread.sleep(2);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        p.destroyForcibly();
        throw new IOException("the device's process (pid " + p.pid() + ") did not become rbd-nbd within 2 s");
    }

    private static Path tail() throws IOException {
        return onPath("tail");
    }

    private static Path setsid() throws IOException {
        return onPath("setsid");
    }

    private static Path onPath(String program) throws IOException {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            Path t = Path.of(dir, program);
            if (Files.isExecutable(t)) {
                return t.toRealPath();
            }
        }
        throw new IOException("no " + program + " on PATH: the device's process cannot be started");
    }

    public long pid() {
        return process.pid();
    }

    public String device() {
        return device;
    }

    /**
     * Completes with the exit value when the process ends by anything but {@link #close}: 143
     * for SIGTERM, 130 for SIGINT, 137 for SIGKILL.
     */
    public CompletableFuture<Integer> endedByOthers() {
        return process.onExit().thenApply(Process::exitValue).thenCompose(v -> stopping
                ? new CompletableFuture<Integer>() : CompletableFuture.completedFuture(v));
    }

    /** An ending that asks to unmap the device (as SIGTERM or SIGINT to Ceph's process does). */
    static boolean asksToUnmap(int exitValue) {
        return exitValue == BY_SIGTERM || exitValue == BY_SIGINT;
    }

    /** Stops the process and waits (briefly) until it is gone, so that it is not listed after unmap. */
    @Override
    public void close() {
        stopping = true;
        process.destroyForcibly();
        try {
            process.waitFor(2, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
