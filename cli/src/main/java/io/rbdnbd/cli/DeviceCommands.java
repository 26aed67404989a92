package io.rbdnbd.cli;


import com.typesafe.config.Config;
import io.rbdnbd.actors.DeviceSupervisor;
import io.rbdnbd.actors.KernelAttach;
import io.rbdnbd.engine.backend.ImageSpec;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.nativeio.LibC;
import io.rbdnbd.nativeio.NativeException;
import io.rbdnbd.nativeio.NbdDevice;
import io.rbdnbd.nativeio.NbdNetlink;
import org.apache.pekko.actor.typed.ActorSystem;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import sun.misc.Signal;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * {@code map}, {@code unmap} and {@code list-mapped}, and the per-device daemon that {@code map}
 * starts (one process per device, as Ceph's rbd-nbd does): it stays in the background serving
 * the device until unmapped or signalled.
 */
final class DeviceCommands {
    private static final Logger log = LoggerFactory.getLogger(DeviceCommands.class);
    /** The hidden command the background process runs. */
    static final String DAEMON_COMMAND = "device-daemon";
    /** The same, taking over a device whose daemon died ({@code attach}). */
    static final String REATTACH_DAEMON_COMMAND = "device-daemon-attach";
    /** How long {@code map} waits for the daemon to report the device ready. */
    private static final long MAP_TIMEOUT_SECONDS = 60;

    private DeviceCommands() {
    }

    /** Runs in the background process: maps, prints the device, serves until unmap or SIGTERM. */
    static int daemon(MapOptions o, boolean reattach, Config config, PrintStream out) throws CommandFailedException {
        try {
            // Memory reclaim may write through our own device: never throttle this process for it.
            LibC.prctlSet(LibC.PR_SET_IO_FLUSHER, 1, "prctl(PR_SET_IO_FLUSHER)");
        } catch (NativeException e) {
            log.warn("{} (needs CAP_SYS_RESOURCE, kernel >= 5.6); memory pressure may deadlock on this device",
                    e.getMessage());
        }
        EngineSettings settings = EngineSettings.from(config);
        String cookie = o.cookie();
        if (cookie == null && reattach) {
            cookie = NbdDevice.backendId(NbdDevice.index(o.device())).orElseThrow(() -> new CommandFailedException(
                    o.device() + " has no backend cookie to re-attach with (not netlink-attached?); give --cookie", null));
        }
        if (cookie == null) {
            cookie = java.util.UUID.randomUUID().toString();
        }
        CompletableFuture<DeviceSupervisor.Report> mapped = new CompletableFuture<>();
        CompletableFuture<DeviceSupervisor.Report> ended = new CompletableFuture<>();
        ActorSystem<DeviceSupervisor.Command> system = ActorSystem.create(DeviceSupervisor.create(
                new DeviceSupervisor.Params(o.image(), o.createSize(),
                        new KernelAttach.Params(o.device(), o.readOnly(), !o.noTrim(), o.ioTimeoutSeconds(),
                                config.getBoolean("rbdnbd.kernel.netlink"), cookie, o.reattachTimeoutSeconds(), reattach),
                        config.getDuration("rbdnbd.kernel.size-poll-interval")),
                settings, r -> {
                    if (r instanceof DeviceSupervisor.Mapped) {
                        mapped.complete(r);
                    } else {
                        mapped.complete(r);
                        ended.complete(r);
                    }
                }), "rbdnbd", config);
        Signal.handle(new Signal("TERM"), s -> system.tell(new DeviceSupervisor.Unmap()));
        Signal.handle(new Signal("INT"), s -> system.tell(new DeviceSupervisor.Unmap()));
        system.getWhenTerminated().thenRun(() -> {
            DeviceSupervisor.MapFailed gone = new DeviceSupervisor.MapFailed("stopped unexpectedly; see the log above");
            mapped.complete(gone);
            ended.complete(gone);
        });
        DeviceSupervisor.Report first = mapped.join();
        if (first instanceof DeviceSupervisor.MapFailed f) {
            system.getWhenTerminated().toCompletableFuture().join();
            throw new CommandFailedException(f.reason(), null);
        }
        String device = ((DeviceSupervisor.Mapped) first).device();
        out.println(o.showCookie() ? device + " " + NbdDevice.backendId(NbdDevice.index(device)).orElse(cookie) : device);
        out.flush();
        out.close(); // map relays this line and returns; nothing else may hold its pipe open
        DeviceSupervisor.Report end = ended.join();
        system.getWhenTerminated().toCompletableFuture().join();
        if (end instanceof DeviceSupervisor.Unmapped u) {
            log.info("{} {} ({})", u.device(), u.why(), u.clean() ? "image closed" : "closing the image failed");
            return u.clean() ? 0 : Main.EXIT_FAILURE;
        }
        return Main.EXIT_FAILURE;
    }

    /** Starts the device daemon in its own session and relays the device it reports. */
    static int map(MapOptions o, boolean reattach, PrintStream out) throws CommandFailedException {
        Path logDir = Path.of(System.getenv().getOrDefault("RBDNBD_LOG_DIR", "/var/log/rbd-nbd"));
        Path logFile;
        try {
            Files.createDirectories(logDir);
            logFile = Files.createTempFile(logDir, "rbd-nbd-", ".log");
        } catch (IOException e) {
            throw new CommandFailedException("cannot create a log file in " + logDir + ": " + e, e);
        }
        List<String> cmd = new ArrayList<>(List.of("setsid", javaCommand()));
        cmd.addAll(ProcessHandle.current().info().arguments().map(DeviceCommands::jvmOptions).orElse(List.of()));
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName(),
                reattach ? REATTACH_DAEMON_COMMAND : DAEMON_COMMAND));
        cmd.addAll(o.toArgs());
        Process p;
        try {
            p = new ProcessBuilder(cmd).redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                    .redirectError(logFile.toFile()).start();
        } catch (IOException e) {
            throw new CommandFailedException("cannot start the device daemon: " + e.getMessage(), e);
        }
        CompletableFuture<String> line = CompletableFuture.supplyAsync(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                return r.readLine();
            } catch (IOException e) {
                return null;
            }
        });
        String device;
        try {
            device = line.get(MAP_TIMEOUT_SECONDS, TimeUnit.SECONDS);
        } catch (Exception e) {
            p.destroy();
            throw new CommandFailedException("the device daemon did not report a device within " + MAP_TIMEOUT_SECONDS
                    + " s; its log: " + logFile, e);
        }
        if (device == null || !device.startsWith("/dev/")) {
            try {
                p.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            throw new CommandFailedException(lastError(logFile), null);
        }
        out.println(device);
        return 0;
    }

    /** The daemon's own one-line reason, else the log's last line. */
    private static String lastError(Path logFile) {
        try {
            List<String> lines = Files.readAllLines(logFile);
            for (int i = lines.size() - 1; i >= 0; i--) {
                if (lines.get(i).startsWith("rbd-nbd: ")) {
                    return lines.get(i).substring("rbd-nbd: ".length());
                }
            }
            return "the device daemon failed; its log " + logFile + " ends: "
                    + (lines.isEmpty() ? "(empty)" : lines.get(lines.size() - 1));
        } catch (IOException e) {
            return "the device daemon failed; see " + logFile;
        }
    }

    private static String javaCommand() {
        return ProcessHandle.current().info().command().orElse("java");
    }

    /** The JVM options of this process (everything before the class path), for the daemon. */
    private static List<String> jvmOptions(String[] args) {
        List<String> opts = new ArrayList<>();
        for (String a : args) {
            if (a.equals("-cp") || a.equals("-classpath") || a.equals("--class-path") || !a.startsWith("-")) {
                break;
            }
            opts.add(a);
        }
        return opts;
    }

    /** A device mapped by one of our daemons. */
    record Mapping(int pid, String image, String device) {
    }

    static List<Mapping> mappings() {
        List<Mapping> found = new ArrayList<>();
        for (int i = 0; Files.exists(Path.of("/sys/block/nbd" + i)); i++) {
            OptionalInt pid = NbdDevice.servingPid(i);
            if (pid.isEmpty()) {
                continue;
            }
            Optional<String[]> args = ProcessHandle.of(pid.getAsInt()).flatMap(h -> h.info().arguments());
            if (args.isEmpty()) {
                continue;
            }
            String[] a = args.get();
            for (int k = 0; k + 2 < a.length; k++) {
                if (a[k].equals(Main.class.getName())
                        && (a[k + 1].equals(DAEMON_COMMAND) || a[k + 1].equals(REATTACH_DAEMON_COMMAND))) {
                    found.add(new Mapping(pid.getAsInt(), a[k + 2], "/dev/nbd" + i));
                }
            }
        }
        return found;
    }

    /** Netlink DISCONNECT where the kernel has it (it also ends ioctl-attached devices), else the ioctl. */
    private static void disconnect(String device) throws NativeException {
        if (NbdNetlink.available()) {
            try (NbdNetlink nl = NbdNetlink.open()) {
                nl.disconnect(NbdDevice.index(device));
            }
        } else {
            try (NbdDevice d = NbdDevice.open(device)) {
                d.disconnect();
            }
        }
    }

    /** {@code list-mapped [--format plain|json|xml] [--pretty-format]} */
    static int listMapped(String[] args, PrintStream out) throws UsageException {
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
        List<MappedListing.Row> rows = new ArrayList<>();
        for (Mapping m : mappings()) {
            String cookie = NbdDevice.backendId(NbdDevice.index(m.device())).orElse("");
            rows.add(row(m, cookie));
        }
        out.print(MappedListing.format(rows, format, pretty));
        out.flush();
        return 0;
    }

    /** Ceph's columns for a mapping; file: and memory: images show their spec as the image. */
    static MappedListing.Row row(Mapping m, String cookie) {
        ImageSpec spec;
        try {
            spec = ImageSpec.parse(m.image());
        } catch (IllegalArgumentException e) {
            spec = null;
        }
        if (spec instanceof ImageSpec.Rbd r) {
            return new MappedListing.Row(m.pid(), r.pool(), r.namespace(), r.image(), r.snap() == null ? "" : r.snap(),
                    m.device(), cookie);
        }
        return new MappedListing.Row(m.pid(), "", "", m.image(), "", m.device(), cookie);
    }

    /**
     * Disconnects a device (named by device, or by the image a live daemon of ours serves) and
     * waits for its daemon to exit. A device whose daemon died (netlink keeps it for re-attach) is
     * disconnected too.
     */
    static int unmap(String target, PrintStream out) throws CommandFailedException {
        List<Mapping> ms = mappings().stream()
                .filter(m -> m.device().equals(target) || m.image().equals(target)).toList();
        if (ms.size() > 1) {
            throw new CommandFailedException(target + " is mapped more than once; unmap by device: "
                    + ms.stream().map(Mapping::device).toList(), null);
        }
        String device;
        Optional<ProcessHandle> daemon = Optional.empty();
        if (ms.size() == 1) {
            device = ms.get(0).device();
            daemon = ProcessHandle.of(ms.get(0).pid());
        } else if (target.matches("/dev/nbd\\d+") && NbdDevice.servingPid(NbdDevice.index(target)).isPresent()) {
            int pid = NbdDevice.servingPid(NbdDevice.index(target)).getAsInt();
            if (ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
                throw new CommandFailedException(target + " is served by pid " + pid + ", which is not rbd-nbd", null);
            }
            device = target; // its daemon died: the kernel still holds it for a re-attach
        } else {
            throw new CommandFailedException(target + " is not mapped", null);
        }
        try {
            disconnect(device);
        } catch (NativeException e) {
            throw new CommandFailedException(e.getMessage(), e);
        }
        if (daemon.isPresent()) {
            try {
                daemon.get().onExit().get(MAP_TIMEOUT_SECONDS, TimeUnit.SECONDS);
            } catch (Exception e) {
                throw new CommandFailedException("device " + device + " disconnected, but its daemon (pid "
                        + daemon.get().pid() + ") did not exit within " + MAP_TIMEOUT_SECONDS + " s", e);
            }
        }
        return 0;
    }
}
