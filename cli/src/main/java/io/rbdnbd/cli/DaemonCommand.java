package io.rbdnbd.cli;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import io.rbdnbd.actors.DeviceSupervisor;
import io.rbdnbd.actors.KernelBudget;
import io.rbdnbd.actors.daemon.ConfigCheck;
import io.rbdnbd.actors.daemon.ControlServer;
import io.rbdnbd.actors.daemon.DaemonBean;
import io.rbdnbd.actors.jmx.JmxRegistry;
import io.rbdnbd.actors.jmx.JmxRemote;
import io.rbdnbd.actors.jmx.JmxSettings;
import io.rbdnbd.actors.daemon.DaemonGuardian;
import io.rbdnbd.actors.daemon.DaemonSettings;
import io.rbdnbd.actors.daemon.DeviceProcess;
import io.rbdnbd.actors.daemon.DeviceRequest;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.nativeio.LibC;
import io.rbdnbd.nativeio.NbdDevice;
import io.rbdnbd.nativeio.NativeException;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import sun.misc.Signal;

import java.io.File;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

/**
 * {@code rbd-nbd daemon [--exit-when-idle]}: the one process that serves every device. In the
 * foreground it is what the systemd unit runs (and maps {@code rbdnbd.daemon.devices}); {@code map}
 * starts it in the background with {@code --exit-when-idle} when none runs.
 */
final class DaemonCommand {
    private static final Logger log = LoggerFactory.getLogger(DaemonCommand.class);
    static final String COMMAND = "daemon";

    private DaemonCommand() {
    }

    static int run(String[] args, Config config) throws UsageException, CommandFailedException {
        boolean exitWhenIdle = false;
        for (String a : args) {
            if (a.equals("--exit-when-idle")) {
                exitWhenIdle = true;
            } else {
                throw new UsageException("daemon: unknown option '" + a + "' (--exit-when-idle)");
            }
        }
        ConfigCheck.check(config, ConfigFactory.defaultReference());
        DaemonSettings settings = DaemonSettings.from(config);
        try {
            KernelBudget.bound(config).requireFitsThisJvm();
        } catch (IllegalStateException | com.typesafe.config.ConfigException e) {
            throw new CommandFailedException(e.getMessage(), null);
        }
        try {
            // Memory reclaim may write through our own devices: never throttle this process for it.
            LibC.prctlSet(LibC.PR_SET_IO_FLUSHER, 1, "prctl(PR_SET_IO_FLUSHER)");
        } catch (NativeException e) {
            log.warn("{} (needs CAP_SYS_RESOURCE, kernel >= 5.6); memory pressure may deadlock on our devices",
                    e.getMessage());
        }
        JmxSettings jmxSettings = JmxSettings.from(config);
        try (FileChannel lockFile = lock(settings.lockFile()); JmxRemote remote = startRemote(jmxSettings)) {
            JmxRegistry jmx = JmxRegistry.from(jmxSettings);
            AtomicReference<ControlServer> control = new AtomicReference<>();
            ActorSystem<DaemonGuardian.Command> system = ActorSystem.create(DaemonGuardian.create(
                    new DaemonGuardian.Params(config, EngineSettings.from(config),
                            config.getBoolean("rbdnbd.kernel.netlink"), config.getDuration("rbdnbd.kernel.size-poll-interval"),
                            exitWhenIdle, settings.idleLinger(), DeviceSupervisor.KERNEL,
                            () -> closeQuietly(control.get()), jmx,
                            config.getBoolean("rbdnbd.daemon.device-processes")
                                    ? DeviceProcess.in(settings.runDirectory()) : DeviceProcess.NONE)),
                    "rbdnbd", config);
            jmx.registerDaemon(new DaemonBean(system, system.scheduler(), settings.deviceDefaults(), settings.mapTimeout()));
            try {
                control.set(ControlServer.start(settings.controlSocket(), ControlServer.daemonHandler(system,
                        system.scheduler(), settings.deviceDefaults(), settings.mapTimeout())));
            } catch (IOException e) {
                system.terminate();
                throw new CommandFailedException("cannot open the control socket " + settings.controlSocket() + ": " + e, e);
            }
            Signal.handle(new Signal("TERM"), s -> system.tell(new DaemonGuardian.StopAll()));
            Signal.handle(new Signal("INT"), s -> system.tell(new DaemonGuardian.StopAll()));
            log.info("rbd-nbd daemon (pid {}) serving; control socket {}", ProcessHandle.current().pid(),
                    settings.controlSocket());
            for (DeviceRequest configured : settings.devices()) {
                DeviceRequest d = takeOver(configured);
                AskPattern.<DaemonGuardian.Command, DaemonGuardian.MapReply>ask(system,
                        to -> new DaemonGuardian.Map(d, to), settings.mapTimeout(), system.scheduler())
                        .whenComplete((reply, failure) -> {
                            if (failure != null || reply.error() != null) {
                                log.error("configured device {} not mapped: {}", d.spec(),
                                        failure != null ? failure.toString() : reply.error());
                            }
                        });
            }
            system.getWhenTerminated().toCompletableFuture().join();
            closeQuietly(control.get());
            return 0;
        } catch (IOException e) {
            throw new CommandFailedException("cannot lock " + settings.lockFile() + ": " + e.getMessage(), e);
        }
    }

    /**
     * A configured device that is still connected with no live server (this daemon died, systemd
     * restarts it) is attached again rather than mapped anew: the kernel held its I/O for the
     * reattach timeout and replays it, so filesystems on it carry on.
     */
    private static DeviceRequest takeOver(DeviceRequest d) {
        if (d.device() == null || d.attach() || !Files.exists(Path.of("/sys/block/" + d.device().substring(5)))) {
            return d;
        }
        int index = NbdDevice.index(d.device());
        java.util.Optional<String> cookie = NbdDevice.backendId(index);
        if (!NbdDevice.orphaned(index) || cookie.isEmpty() || (d.cookie() != null && !d.cookie().equals(cookie.get()))) {
            return d;
        }
        log.info("{} is held by the kernel for its dead server: attaching {} to it again", d.device(), d.spec());
        return new DeviceRequest(d.spec(), d.image(), d.device(), d.readOnly(), d.trim(), d.ioTimeoutSeconds(),
                d.reattachTimeoutSeconds(), -1, cookie.get(), true, d.quiesce(), d.quiesceHook(), d.ceph(), d.logFile());
    }

    private static JmxRemote startRemote(JmxSettings settings) throws CommandFailedException {
        try {
            JmxRemote remote = JmxRemote.start(settings);
            remote.address().ifPresent(a -> log.info("JMX connector {} (password required)", a));
            return remote;
        } catch (IOException e) {
            throw new CommandFailedException("cannot start the JMX connector on " + settings.remoteHost() + ":"
                    + settings.remotePort() + ": " + e.getMessage(), e);
        }
    }

    /** Takes the daemon lock (held until exit) and writes our pid into it. */
    private static FileChannel lock(Path path) throws IOException, CommandFailedException {
        Files.createDirectories(path.getParent());
        FileChannel ch = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
        FileLock lock = ch.tryLock();
        if (lock == null) {
            String pid = Files.readString(path).trim();
            ch.close();
            throw new CommandFailedException("an rbd-nbd daemon runs already (pid " + pid + ", lock " + path + ")", null);
        }
        ch.truncate(0);
        ch.write(java.nio.ByteBuffer.wrap((ProcessHandle.current().pid() + "\n").getBytes(StandardCharsets.US_ASCII)));
        return ch;
    }

    private static void closeQuietly(ControlServer s) {
        if (s != null) {
            s.close();
        }
    }

    /**
     * Starts the daemon in its own session, in the background, logging to {@code logFile}, with
     * this JVM's options but its heap and direct memory sized from the configuration (its
     * {@link KernelBudget#bound bound}) unless RBDNBD_JAVA_OPTS sets them.
     */
    static Process spawn(Path logFile, Config config) throws CommandFailedException {
        try {
            Files.createDirectories(logFile.toAbsolutePath().getParent());
        } catch (IOException e) {
            throw new CommandFailedException("cannot create the log directory of " + logFile + ": " + e, e);
        }
        List<String> cmd = new ArrayList<>(List.of("setsid", ProcessHandle.current().info().command().orElse("java")));
        List<String> sized;
        try {
            sized = KernelBudget.bound(config).jvmOptions();
        } catch (com.typesafe.config.ConfigException e) {
            throw new CommandFailedException(e.getMessage(), e);
        }
        cmd.addAll(daemonJvmOptions(ProcessHandle.current().info().arguments().map(DaemonCommand::jvmOptions)
                .orElse(List.of()), System.getenv().getOrDefault("RBDNBD_JAVA_OPTS", ""), sized));
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName(), COMMAND, "--exit-when-idle"));
        try {
            return new ProcessBuilder(cmd).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                    .redirectError(ProcessBuilder.Redirect.appendTo(logFile.toFile())).start();
        } catch (IOException e) {
            throw new CommandFailedException("cannot start the rbd-nbd daemon: " + e.getMessage(), e);
        }
    }

    /**
     * The daemon's JVM options: this process's, with the heap and direct memory limits the launcher
     * chose for a short-lived command replaced by {@code sized}, unless the user set them.
     */
    static List<String> daemonJvmOptions(List<String> ours, String userOptions, List<String> sized) {
        String user = " " + userOptions + " ";
        boolean userHeap = user.contains(" -Xmx");
        boolean userDirect = user.contains(" -XX:MaxDirectMemorySize=");
        List<String> opts = new ArrayList<>();
        for (String o : ours) {
            boolean heap = o.startsWith("-Xmx");
            boolean direct = o.startsWith("-XX:MaxDirectMemorySize=");
            if ((heap && !userHeap) || (direct && !userDirect)) {
                continue;
            }
            opts.add(o);
        }
        for (String o : sized) {
            if (o.startsWith("-Xmx") ? !userHeap : !userDirect) {
                opts.add(o);
            }
        }
        return opts;
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

    /** The daemon's own one-line reason from its log, else the log's last line. */
    static String lastError(Path logFile) {
        try {
            List<String> lines = Files.readAllLines(logFile);
            for (int i = lines.size() - 1; i >= 0; i--) {
                if (lines.get(i).startsWith("rbd-nbd: ")) {
                    return lines.get(i).substring("rbd-nbd: ".length());
                }
            }
            return "its log " + logFile + " ends: " + (lines.isEmpty() ? "(empty)" : lines.get(lines.size() - 1));
        } catch (IOException e) {
            return "see " + logFile;
        }
    }
}
