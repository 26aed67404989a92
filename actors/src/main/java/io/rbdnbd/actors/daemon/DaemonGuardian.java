package io.rbdnbd.actors.daemon;

import com.typesafe.config.Config;
import io.rbdnbd.actors.DeviceSupervisor;
import io.rbdnbd.actors.KernelAttach;
import io.rbdnbd.actors.jmx.DeviceInfo;
import io.rbdnbd.actors.jmx.DeviceState;
import io.rbdnbd.actors.jmx.DeviceView;
import io.rbdnbd.actors.jmx.JmxRegistry;
import io.rbdnbd.actors.jmx.StatsText;
import io.rbdnbd.engine.backend.ImageSpec;
import io.rbdnbd.engine.backend.ReopenableBackend;
import io.rbdnbd.engine.quiesce.QuiesceHook;
import io.rbdnbd.engine.stream.EngineSettings;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * The daemon: one {@link DeviceSupervisor} per mapped device, each a child of its own, so that a
 * device that fails (its image, its kernel connection, a bug) stops alone. Maps, unmaps, detaches
 * and lists on behalf of the control socket, the configuration and JMX. On {@link StopAll}
 * (SIGTERM) every device is stopped as Ceph's rbd-nbd stops its one: ioctl devices are unmapped,
 * netlink devices detached (the kernel holds them for the re-attach timeout); the daemon ends
 * when the last one has gone. Started by {@code map} ({@code exitWhenIdle}), it also ends once its
 * last device is unmapped, as the per-device processes of Ceph's rbd-nbd do.
 */
public final class DaemonGuardian extends AbstractBehavior<DaemonGuardian.Command> {

    public interface Command {
    }

    /** Map a device; the reply comes once it is usable (or could not be mapped). */
    public record Map(DeviceRequest request, ActorRef<MapReply> replyTo) implements Command {
    }

    /**
     * @param pid   the id list-mapped shows for the device: its own process, or the daemon's
     * @param error null when mapped
     */
    public record MapReply(String device, String cookie, long pid, String error) {
        static MapReply failed(String error) {
            return new MapReply(null, null, -1, error);
        }
    }

    /**
     * Unmap the device named by path or image spec (with {@code snapId} >= 0: that snapshot of the
     * image, as {@code rbd device unmap --snap-id} names it); the reply comes once it is gone.
     */
    public record Unmap(String target, long snapId, boolean force, ActorRef<Reply> replyTo) implements Command {
    }

    /** Stop serving a netlink device but leave it to the kernel for a later attach. */
    public record Detach(String target, long snapId, ActorRef<Reply> replyTo) implements Command {
    }

    /** @param error null when done */
    public record Reply(String error) {
    }

    public record ListDevices(ActorRef<Listing> replyTo) implements Command {
    }

    /** The statistics of the device {@code target} names, or of every device when it is "". */
    public record Stats(String target, ActorRef<StatsReply> replyTo) implements Command {
    }

    /** @param text as {@code rbd-nbd stats} prints it; @param error null when found */
    public record StatsReply(String text, String error) {
    }

    /** A device of this daemon, as list-mapped and stats show it. */
    public record Device(long pid, String spec, ImageSpec image, String device, String cookie, DeviceState state,
                         boolean netlink) {
    }

    public record Listing(List<Device> devices) {
    }

    /** SIGTERM: stop every device (unmap ioctl ones, detach netlink ones), then end. */
    public record StopAll() implements Command {
    }

    private record FromDevice(long id, DeviceSupervisor.Report report) implements Command {
    }

    private record DeviceStopped(long id) implements Command {
    }

    /** The process standing for a device ended, and not because the daemon stopped it. */
    private record DeviceProcessEnded(long id, long pid, int exitValue) implements Command {
    }

    private record IdleCheck() implements Command {
    }

    /** A device's state: its request, its supervisor, and who waits for it to map or go. */
    private static final class Entry {
        final long id;
        final DeviceRequest request;
        final String cookie;
        final ActorRef<DeviceSupervisor.Command> supervisor;
        ActorRef<MapReply> mapReplyTo;
        final List<ActorRef<Reply>> goneWaiters = new ArrayList<>();
        volatile String device;
        boolean netlink;
        /** Read by JMX threads through the device's view. */
        volatile DeviceState state = DeviceState.MAPPING;
        DeviceView view;
        /** Stands for the device (its id) while it is mapped; null before, or when none could start. */
        DeviceProcess process;

        Entry(long id, DeviceRequest request, String cookie, ActorRef<DeviceSupervisor.Command> supervisor,
              ActorRef<MapReply> mapReplyTo) {
            this.id = id;
            this.request = request;
            this.cookie = cookie;
            this.supervisor = supervisor;
            this.mapReplyTo = mapReplyTo;
            this.device = request.device();
        }
    }

    /**
     * @param config        the daemon's configuration; each device lays its own Ceph options over it
     * @param exitWhenIdle  end once the last device has gone (the daemon {@code map} started)
     * @param idleLinger    how long to wait, idle, before ending (a map may be on its way)
     * @param beforeExit    run just before the daemon ends (closes the control socket, so that no
     *                      request is taken that nobody would answer)
     * @param processes     starts the process that stands for each mapped device (its id), or
     *                      {@link DeviceProcess#NONE}
     */
    public record Params(Config config, EngineSettings engine, boolean netlink, Duration sizePollInterval,
                         boolean exitWhenIdle, Duration idleLinger, DeviceSupervisor.Attacher attacher,
                         Runnable beforeExit, JmxRegistry jmx, DeviceProcess.Starter processes) {
    }

    public static Behavior<Command> create(Params params) {
        return Behaviors.setup(ctx -> {
            ctx.setLoggerName(DaemonGuardian.class);
            return Behaviors.withTimers(timers -> new DaemonGuardian(ctx, timers, params));
        });
    }

    private final TimerScheduler<Command> timers;
    private final Params params;
    private final java.util.Map<Long, Entry> entries = new LinkedHashMap<>();
    private final long pid = ProcessHandle.current().pid();
    private long nextId;
    private boolean stopping;

    private DaemonGuardian(ActorContext<Command> ctx, TimerScheduler<Command> timers, Params params) {
        super(ctx);
        this.timers = timers;
        this.params = params;
        if (params.exitWhenIdle()) {
            timers.startSingleTimer(new IdleCheck(), params.idleLinger()); // started for a map that may fail
        }
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Map.class, this::onMap)
                .onMessage(Unmap.class, this::onUnmap)
                .onMessage(Detach.class, this::onDetach)
                .onMessage(ListDevices.class, this::onList)
                .onMessage(Stats.class, this::onStats)
                .onMessage(StopAll.class, this::onStopAll)
                .onMessage(FromDevice.class, this::onFromDevice)
                .onMessage(DeviceStopped.class, this::onDeviceStopped)
                .onMessage(DeviceProcessEnded.class, this::onDeviceProcessEnded)
                .onMessage(IdleCheck.class, this::onIdleCheck)
                .build();
    }

    private Behavior<Command> onMap(Map m) {
        DeviceRequest r = m.request();
        if (stopping) {
            m.replyTo().tell(MapReply.failed("the daemon is stopping"));
            return this;
        }
        if (r.device() != null) {
            for (Entry e : entries.values()) {
                if (r.device().equals(e.device)) {
                    m.replyTo().tell(MapReply.failed(r.device() + " is busy (mapped to " + e.request.spec() + ")"));
                    return this;
                }
            }
        }
        int max = io.rbdnbd.actors.KernelBudget.of(getContext().getSystem()).maxDevices();
        if (entries.size() >= max) {
            m.replyTo().tell(MapReply.failed("the daemon serves " + entries.size()
                    + " devices, its most (rbdnbd.kernel.max-devices)"));
            return this;
        }
        long id = nextId++;
        String cookie = r.cookie() != null ? r.cookie() : UUID.randomUUID().toString();
        KernelAttach.Params attach = new KernelAttach.Params(r.device(), r.readOnly(), r.trim(), r.ioTimeoutSeconds(),
                params.netlink(), cookie, r.reattachTimeoutSeconds(), r.attach());
        ActorRef<Command> self = getContext().getSelf();
        Config deviceConfig = r.deviceConfig(params.config());
        QuiesceHook.Settings quiesce = null;
        if (r.quiesce()) {
            quiesce = QuiesceHook.Settings.from(deviceConfig);
            quiesce = r.quiesceHook() != null ? quiesce.withHook(r.quiesceHook()) : quiesce;
        }
        ActorRef<DeviceSupervisor.Command> supervisor = getContext().spawn(DeviceSupervisor.create(
                new DeviceSupervisor.Params(r.image(), r.createSize(), attach, params.sizePollInterval(),
                        deviceConfig, params.attacher(), quiesce),
                params.engine(), report -> self.tell(new FromDevice(id, report))), "device-" + id);
        getContext().watchWith(supervisor, new DeviceStopped(id));
        entries.put(id, new Entry(id, r, cookie, supervisor, m.replyTo()));
        timers.cancel(IdleCheck.class);
        if (r.logFile() != null) {
            DeviceLogs.add(supervisor.path().toString(), r.logFile());
        }
        about(entries.get(id), log -> log.info("mapping {}{}", r.spec(), r.device() != null ? " to " + r.device() : ""));
        return this;
    }

    private Behavior<Command> onUnmap(Unmap u) {
        Entry e = find(u.target(), u.snapId(), error -> u.replyTo().tell(new Reply(error)));
        if (e == null) {
            return this;
        }
        e.goneWaiters.add(u.replyTo());
        e.state = DeviceState.UNMAPPING;
        e.supervisor.tell(u.force() ? new DeviceSupervisor.ForceUnmap() : new DeviceSupervisor.Unmap());
        return this;
    }

    private Behavior<Command> onDetach(Detach d) {
        Entry e = find(d.target(), d.snapId(), error -> d.replyTo().tell(new Reply(error)));
        if (e == null) {
            return this;
        }
        if (!e.netlink || e.device == null || e.state == DeviceState.MAPPING) {
            d.replyTo().tell(new Reply(e.device == null || e.state == DeviceState.MAPPING
                    ? e.request.spec() + " is still being mapped"
                    : e.device + " is attached through the ioctls and cannot outlive its server: detach needs netlink"
                    + " (rbdnbd.kernel.netlink = on and a kernel with the nbd netlink family)"));
            return this;
        }
        e.goneWaiters.add(d.replyTo());
        e.state = DeviceState.DETACHING;
        e.supervisor.tell(new DeviceSupervisor.Detach());
        return this;
    }

    /**
     * The one entry a device path or image spec names (a snapshot of it by id when {@code snapId}
     * >= 0); else null, after telling {@code notFound} why.
     */
    private Entry find(String target, long snapId, java.util.function.Consumer<String> notFound) {
        List<Entry> matches = new ArrayList<>();
        String spec = null;
        try {
            ImageSpec s = ImageSpec.parse(target);
            spec = (snapId >= 0 && s instanceof ImageSpec.Rbd r ? r.withSnapId(snapId) : s).toString();
        } catch (IllegalArgumentException e) {
            // not an image spec (or a snapshot by name and by id at once): only a device path can match
        }
        for (Entry e : entries.values()) {
            if ((snapId < 0 && target.equals(e.device)) || (spec != null && spec.equals(e.request.image().toString()))) {
                matches.add(e);
            }
        }
        if (matches.size() == 1) {
            return matches.get(0);
        }
        notFound.accept(matches.isEmpty() ? (spec != null ? spec : target) + " is not mapped"
                : target + " is mapped more than once; name the device: "
                + matches.stream().map(e -> e.device).toList());
        return null;
    }

    private Behavior<Command> onList(ListDevices l) {
        List<Device> out = new ArrayList<>();
        for (Entry e : entries.values()) {
            if (e.device != null && e.state != DeviceState.MAPPING) {
                out.add(new Device(e.process != null ? e.process.pid() : pid, e.request.spec(), e.request.image(),
                        e.device, e.cookie, e.state, e.netlink));
            }
        }
        l.replyTo().tell(new Listing(out));
        return this;
    }

    private Behavior<Command> onStats(Stats s) {
        List<DeviceView> views = new ArrayList<>();
        if (s.target().isEmpty()) {
            entries.values().stream().filter(e -> e.view != null).forEach(e -> views.add(e.view));
        } else {
            Entry e = find(s.target(), -1, error -> s.replyTo().tell(new StatsReply(null, error)));
            if (e == null) {
                return this;
            }
            if (e.view == null) {
                s.replyTo().tell(new StatsReply(null, s.target() + " is still being mapped"));
                return this;
            }
            views.add(e.view);
        }
        s.replyTo().tell(new StatsReply(StatsText.format(views), null));
        return this;
    }

    private Behavior<Command> onStopAll(StopAll s) {
        if (!stopping) {
            getContext().getLog().info("stopping: {} device(s) to unmap or detach", entries.size());
        }
        stopping = true;
        for (Entry e : entries.values()) {
            e.state = DeviceState.STOPPING;
            e.supervisor.tell(new DeviceSupervisor.Stop());
        }
        return entries.isEmpty() ? exit() : this;
    }

    private Behavior<Command> onFromDevice(FromDevice f) {
        Entry e = entries.get(f.id());
        if (e == null) {
            return this;
        }
        DeviceSupervisor.Report r = f.report();
        if (r instanceof DeviceSupervisor.Mapped m) {
            e.device = m.device();
            e.netlink = m.netlink();
            e.state = DeviceState.MAPPED;
            ReopenableBackend image = m.image();
            e.view = new DeviceView(DeviceInfo.of(e.request.spec(), () -> e.device,
                    () -> e.state == DeviceState.MAPPED && !image.isUp() ? DeviceState.REOPENING : e.state, image), m.stats());
            params.jmx().registerDevice(m.device(), e.view);
            startProcess(e);
            about(e, log -> log.info("{} mapped to {}{}", e.request.spec(), m.device(),
                    e.process != null ? " (pid " + e.process.pid() + ")" : ""));
            if (e.mapReplyTo != null) {
                e.mapReplyTo.tell(new MapReply(m.device(), e.cookie, e.process != null ? e.process.pid() : pid, null));
                e.mapReplyTo = null;
            }
            if (stopping) {
                e.supervisor.tell(new DeviceSupervisor.Stop());
            }
        } else if (r instanceof DeviceSupervisor.MapFailed failed) {
            about(e, log -> log.error("mapping {} failed: {}", e.request.spec(), failed.reason()));
            gone(e, failed.reason());
        } else if (r instanceof DeviceSupervisor.Unmapped u) {
            about(e, log -> log.info("{} {}{}", u.device(), u.why(), u.clean() ? "" : " (closing the image failed)"));
            gone(e, u.clean() ? null : u.device() + " " + u.why() + ", but closing the image failed: see the daemon's log");
        }
        return maybeIdle();
    }

    private Behavior<Command> onDeviceStopped(DeviceStopped s) {
        Entry e = entries.get(s.id());
        if (e != null) { // the supervisor failed without reporting: a bug, confined to this device
            about(e, log -> log.error("the supervisor of {} ({}) stopped unexpectedly", e.request.spec(), e.device));
            gone(e, "the device's supervisor failed; see the daemon's log");
        }
        return maybeIdle();
    }

    /** The process standing for the device: its pid is the device's id from now on. */
    private void startProcess(Entry e) {
        try {
            e.process = params.processes().start(e.device);
        } catch (java.io.IOException | RuntimeException ex) {
            about(e, log -> log.warn("{}: no process stands for it ({}); list-mapped shows the daemon's pid",
                    e.device, ex.getMessage()));
            return;
        }
        if (e.process != null) {
            ActorRef<Command> self = getContext().getSelf();
            long id = e.id;
            long processPid = e.process.pid();
            e.process.endedByOthers().thenAccept(v -> self.tell(new DeviceProcessEnded(id, processPid, v)));
        }
    }

    /**
     * As with Ceph's per-device process: SIGTERM or SIGINT to it unmaps the device; any other end
     * (SIGKILL) drops the device's server as that process's death would: a netlink device is
     * detached (the kernel holds its I/O for attach), an ioctl device fails its I/O and goes.
     */
    private Behavior<Command> onDeviceProcessEnded(DeviceProcessEnded p) {
        Entry e = entries.get(p.id());
        if (e == null || e.process == null || e.process.pid() != p.pid() || e.state != DeviceState.MAPPED) {
            return this;
        }
        e.process = null; // gone already: list-mapped shows the daemon's pid until the device is
        e.state = DeviceState.UNMAPPING;
        if (DeviceProcess.asksToUnmap(p.exitValue())) {
            about(e, log -> log.info("{}: its process (pid {}) was asked to end: unmapping", e.device, p.pid()));
            e.supervisor.tell(new DeviceSupervisor.Unmap());
        } else if (e.netlink) {
            about(e, log -> log.warn("{}: its process (pid {}) was killed (exit {}): detaching; the kernel holds"
                    + " the device for attach", e.device, p.pid(), p.exitValue()));
            e.supervisor.tell(new DeviceSupervisor.Detach());
        } else {
            about(e, log -> log.warn("{}: its process (pid {}) was killed (exit {}): the device's I/O fails and it"
                    + " goes, as with the ioctls when its server dies", e.device, p.pid(), p.exitValue()));
            e.supervisor.tell(new DeviceSupervisor.ForceUnmap());
        }
        return this;
    }

    /**
     * Logs a line about {@code e}'s device, marked so that the device's own log file (map
     * --log-file), if it has one, gets it too.
     */
    private void about(Entry e, java.util.function.Consumer<org.slf4j.Logger> line) {
        org.slf4j.Logger log = getContext().getLog();
        org.slf4j.MDC.put(DeviceLogs.DEVICE, e.supervisor.path().toString());
        try {
            line.accept(log);
        } finally {
            org.slf4j.MDC.remove(DeviceLogs.DEVICE);
        }
    }

    private void gone(Entry e, String error) {
        DeviceLogs.remove(e.supervisor.path().toString());
        if (e.process != null) {
            e.process.close(); // before anyone hears the device is gone: its pid goes with it
            e.process = null;
        }
        entries.remove(e.id);
        if (e.view != null) {
            params.jmx().unregisterDevice(e.device);
        }
        if (e.mapReplyTo != null) {
            e.mapReplyTo.tell(MapReply.failed(error != null ? error : "unmapped before it was ready"));
        }
        for (ActorRef<Reply> w : e.goneWaiters) {
            w.tell(new Reply(error));
        }
    }

    private Behavior<Command> maybeIdle() {
        if (!entries.isEmpty()) {
            return this;
        }
        if (stopping) {
            return exit();
        }
        if (params.exitWhenIdle()) {
            timers.startSingleTimer(new IdleCheck(), params.idleLinger());
        }
        return this;
    }

    private Behavior<Command> exit() {
        params.beforeExit().run();
        return Behaviors.stopped();
    }

    private Behavior<Command> onIdleCheck(IdleCheck c) {
        if (entries.isEmpty()) {
            getContext().getLog().info("no devices left: exiting");
            return exit();
        }
        return this;
    }
}
