package io.rbdnbd.cli;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import io.rbdnbd.actors.KernelConnection;
import io.rbdnbd.actors.daemon.ControlProtocol;
import io.rbdnbd.actors.daemon.DaemonSettings;
import io.rbdnbd.actors.daemon.DeviceRequest;
import io.rbdnbd.engine.backend.ImageSpec;
import io.rbdnbd.nativeio.NativeException;
import io.rbdnbd.nativeio.NbdDevice;
import sun.misc.Signal;
import sun.misc.SignalHandler;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * {@code map}, {@code attach}, {@code unmap}, {@code detach}, {@code list-mapped} and
 * {@code stats}: each one request to the daemon over its control socket. {@code map} starts the
 * daemon when none runs ({@link DaemonCommand}, which then exits with its last device).
 */
final class DeviceCommands {
    /** How long a starting daemon may take to open its control socket (a JVM start; slow under UML). */
    private static final long DAEMON_START_SECONDS = 120;

    private DeviceCommands() {
    }

    /** Maps (or, with {@code attach}, takes over) a device and prints it once it is usable. */
    static int map(MapOptions o, boolean attach, Config config, PrintStream out, PrintStream err)
            throws CommandFailedException {
        DaemonSettings daemon = DaemonSettings.from(config);
        Config entry = DeviceRequest.entry(o.deviceEntry(attach), "the " + (attach ? "attach" : "map") + " command line");
        try { // the daemon checks it too; here a bad entry fails before a daemon is started for it
            DeviceRequest.from(entry, daemon.deviceDefaults());
        } catch (ConfigException e) {
            throw new CommandFailedException(e.getMessage(), e);
        }
        if (!attach) {
            KernelModule.load(o.nbdsMax(), o.maxPart(), err);
            if (!NbdDevice.driverPresent()) { // before the image: a dead cluster's timeout would hide this
                throw new CommandFailedException("no nbd driver: /sys/block/nbd0 is missing and modprobe nbd did not"
                        + " load it", null);
            }
        }
        ControlProtocol.Mapped mapped = expect(ControlProtocol.Mapped.class,
                callStarting(daemon, new ControlProtocol.MapRequest(entry), config.getString("rbdnbd.daemon.log-file"), config));
        out.println(o.showCookie() ? mapped.device() + " " + mapped.cookie() : mapped.device());
        out.flush();
        return o.foreground() ? stayWith(mapped.device(), mapped.id(), config, err) : 0;
    }

    /**
     * {@code -f}/{@code -d}: stays until the device's process (its list-mapped id) ends, that is
     * until the device is unmapped by anyone; SIGTERM or SIGINT to this command unmaps it, and the
     * command then exits 0 (as Ceph's rbd-nbd in the foreground).
     */
    private static int stayWith(String device, long pid, Config config, PrintStream err) {
        ProcessHandle process = ProcessHandle.of(pid).orElse(null);
        if (process == null) {
            return 0; // unmapped already
        }
        // completes with null when the device is gone, or with why an unmap asked for failed
        CompletableFuture<String> ended = new CompletableFuture<>();
        process.onExit().thenRun(() -> ended.complete(null));
        SignalHandler unmapIt = s -> {
            try {
                unmap(device, -1, false, config);
            } catch (CommandFailedException e) {
                ended.complete(e.getMessage());
            }
        };
        Signal.handle(new Signal("TERM"), unmapIt);
        Signal.handle(new Signal("INT"), unmapIt);
        String failure = ended.join();
        if (failure != null) {
            err.println("rbd-nbd: unmap " + device + ": " + failure);
            return Main.EXIT_FAILURE;
        }
        return 0;
    }

    /** Unmaps a device named by path or image spec and waits until it is gone. */
    static int unmap(String target, long snapId, boolean force, Config config) throws CommandFailedException {
        try {
            if (callIfRunning(DaemonSettings.from(config), new ControlProtocol.UnmapRequest(target, snapId, force)) != null) {
                return 0;
            }
        } catch (CommandFailedException e) {
            if (!orphan(target)) {
                throw e;
            }
        }
        if (!orphan(target)) { // no daemon: nothing is mapped, said as a daemon says it (ceph-csi reads it)
            throw new CommandFailedException(ImageSpec.describeTarget(target, snapId) + " is not mapped", null);
        }
        // a netlink device whose server died: the kernel holds it for a re-attach; unmap ends that
        try {
            KernelConnection.disconnectOrphan(target);
            return 0;
        } catch (NativeException e) {
            throw new CommandFailedException(e.getMessage(), e);
        }
    }

    /** A connected device whose server process is gone. */
    private static boolean orphan(String target) {
        if (!target.matches("/dev/nbd\\d+") || !Files.exists(Path.of("/sys/block/" + target.substring(5)))) {
            return false;
        }
        return NbdDevice.orphaned(NbdDevice.index(target));
    }

    static int detach(String target, long snapId, Config config) throws CommandFailedException {
        if (callIfRunning(DaemonSettings.from(config), new ControlProtocol.DetachRequest(target, snapId)) == null) {
            throw new CommandFailedException(ImageSpec.describeTarget(target, snapId) + " is not mapped", null);
        }
        return 0;
    }

    /** {@code stats [DEV|IMAGE]}: the daemon's per-device counters, as its JMX MXBeans show them. */
    static int stats(String[] args, Config config, PrintStream out) throws UsageException, CommandFailedException {
        if (args.length > 1 || (args.length == 1 && args[0].startsWith("-"))) {
            throw new UsageException("stats: give at most one device (/dev/nbdN) or image");
        }
        ControlProtocol.Answer answer = callIfRunning(DaemonSettings.from(config),
                new ControlProtocol.StatsRequest(args.length == 1 ? args[0] : ""));
        if (answer == null) {
            throw new CommandFailedException("stats: no rbd-nbd daemon runs (nothing is mapped)", null);
        }
        out.print(expect(ControlProtocol.StatsText.class, answer).text());
        out.flush();
        return 0;
    }

    /** {@code list-mapped [--format plain|json|xml] [--pretty-format]}: nothing when no daemon runs. */
    static int listMapped(String[] args, Config config, PrintStream out, PrintStream err)
            throws UsageException, CommandFailedException {
        String format = "plain";
        boolean pretty = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--format") && i + 1 < args.length) {
                format = args[++i];
            } else if (a.startsWith("--format=")) {
                format = a.substring("--format=".length());
            } else if (a.equals("--pretty-format")) {
                pretty = true;
            } else {
                throw new UsageException("list-mapped: unknown option '" + a + "' (--format plain|json|xml, --pretty-format)");
            }
        }
        MappedListing.format(List.of(), format, pretty); // a bad format is refused before asking the daemon
        List<ControlProtocol.MappedDevice> rows = List.of();
        ControlProtocol.Answer answer;
        try {
            answer = checked(ControlProtocol.call(DaemonSettings.from(config).controlSocket(), new ControlProtocol.ListRequest()));
        } catch (ControlProtocol.NoDaemonException e) {
            answer = null;
        } catch (ControlProtocol.AccessDeniedException e) {
            // as Ceph's: a user who cannot see the devices gets what it can see (none), and exit 0
            err.println("rbd-nbd: list-mapped: " + e.getMessage() + "; listing none");
            answer = null;
        } catch (IOException e) {
            throw new CommandFailedException(e.getMessage(), e);
        }
        if (answer != null) {
            rows = expect(ControlProtocol.Listed.class, answer).devices();
        }
        out.print(MappedListing.format(rows, format, pretty));
        out.flush();
        return 0;
    }

    /** One request to a running daemon, or null when none runs; a {@link ControlProtocol.Failed} answer becomes the command's failure. */
    private static ControlProtocol.Answer callIfRunning(DaemonSettings daemon, ControlProtocol.Request request)
            throws CommandFailedException {
        ControlProtocol.Answer answer;
        try {
            answer = ControlProtocol.call(daemon.controlSocket(), request);
        } catch (ControlProtocol.NoDaemonException e) {
            return null;
        } catch (IOException e) {
            throw new CommandFailedException(e.getMessage(), e);
        }
        return checked(answer);
    }

    private static ControlProtocol.Answer checked(ControlProtocol.Answer answer) throws CommandFailedException {
        if (answer instanceof ControlProtocol.Failed f) {
            throw new CommandFailedException(f.error(), null);
        }
        return answer;
    }

    /** The answer as the kind the request asked for; another kind means the daemon is not ours. */
    private static <T extends ControlProtocol.Answer> T expect(Class<T> kind, ControlProtocol.Answer answer)
            throws CommandFailedException {
        if (!kind.isInstance(answer)) {
            throw new CommandFailedException("the rbd-nbd daemon answered " + answer + " where "
                    + kind.getSimpleName() + " was due", null);
        }
        return kind.cast(answer);
    }

    /** As {@link #callIfRunning}, starting the daemon first when none runs. */
    private static ControlProtocol.Answer callStarting(DaemonSettings daemon, ControlProtocol.Request request, String logFile,
                                                       Config config) throws CommandFailedException {
        ControlProtocol.Answer answer = callIfRunning(daemon, request);
        if (answer != null) {
            return answer;
        }
        Process p = DaemonCommand.spawn(Path.of(logFile), config);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(DAEMON_START_SECONDS);
        long exitedAt = 0;
        while (System.nanoTime() < deadline) {
            try {
                return checked(ControlProtocol.call(daemon.controlSocket(), request));
            } catch (ControlProtocol.NoDaemonException e) {
                // not listening yet
            } catch (IOException e) {
                throw new CommandFailedException(e.getMessage(), e);
            }
            if (!p.isAlive()) { // it failed, or lost the race to another map's daemon: give that one a moment
                if (exitedAt == 0) {
                    exitedAt = System.nanoTime();
                } else if (System.nanoTime() - exitedAt > TimeUnit.SECONDS.toNanos(3)) {
                    throw new CommandFailedException("the rbd-nbd daemon exited with " + p.exitValue() + ": "
                            + DaemonCommand.lastError(Path.of(logFile)), null);
                }
            }
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new CommandFailedException("interrupted while the daemon started", e);
            }
        }
        throw new CommandFailedException("the rbd-nbd daemon did not open " + daemon.controlSocket() + " within "
                + DAEMON_START_SECONDS + " s; see " + logFile, null);
    }
}
