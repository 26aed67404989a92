package io.rbdnbd.actors;

import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.protocol.BadClientLog;
import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.stream.ConnectionIo;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.engine.stream.FdConnection;
import io.rbdnbd.engine.stream.InFlightBudget;
import io.rbdnbd.engine.stream.IoStats;
import io.rbdnbd.engine.stream.TransmissionFlow;
import io.rbdnbd.nativeio.Errno;
import io.rbdnbd.nativeio.LibC;
import io.rbdnbd.nativeio.NativeException;
import io.rbdnbd.nativeio.NbdDevice;
import io.rbdnbd.nativeio.NbdNetlink;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.stream.Materializer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalInt;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;

/**
 * Attaches one backend to a kernel NBD device through the ioctl interface: a socketpair, the
 * kernel's end handed over with NBD_SET_SOCK, the engine's transmission flow on ours, and
 * NBD_DO_IT blocking on a thread of the kernel-attach dispatcher (never the default one) until
 * the device is disconnected. Reports {@link Ready} once the kernel serves the device, and
 * {@link Detached} when it no longer does.
 */
public final class KernelAttach {
    private KernelAttach() {
    }

    /**
     * @param device            {@code /dev/nbdN}, or null for the first free device
     * @param ioTimeoutSeconds  how long the kernel waits for a reply before failing the I/O (0: forever)
     * @param netlink           attach through the nbd generic-netlink family (else the ioctls)
     * @param cookie            the backend identifier given to the kernel (netlink), checked on re-attach
     * @param reattachTimeoutSeconds netlink: how long the kernel holds I/O for a new daemon after ours dies
     * @param reattach          take over {@code device}, whose daemon died, instead of connecting a free one
     */
    /** @param trim advertise TRIM and WRITE_ZEROES (Ceph's --notrim turns it off: discards then fail in the kernel) */
    public record Params(String device, boolean readOnly, boolean trim, int ioTimeoutSeconds, boolean netlink,
                         String cookie, int reattachTimeoutSeconds, boolean reattach) {
    }

    /** Sockets per device on the netlink path. */
    static final int NETLINK_SOCKETS = 2;

    public interface Command {
    }

    /** Disconnect the device (NBD_DISCONNECT); in-flight requests are answered first. */
    public record Disconnect() implements Command {
    }

    /**
     * Stop serving but leave a netlink device to the kernel, which holds its I/O for the
     * re-attach timeout (Ceph's {@code detach}): reading stops, in-flight requests are answered,
     * then our sockets close. An ioctl device cannot outlive its server, so there this is
     * {@link Disconnect}.
     */
    public record Detach() implements Command {
    }

    /** What SIGTERM does (as Ceph's rbd-nbd): netlink devices {@link Detach}, ioctl ones {@link Disconnect}. */
    public record Stop() implements Command {
    }

    /**
     * Drop the device's I/O at once (unmap --force): our sockets are shut both ways, so the kernel
     * fails every request it holds, and the device is disconnected.
     */
    public record Abort() implements Command {
    }

    /** Tell the kernel the image now has {@code size} bytes. */
    /** @param applied completed once the kernel has the size (partitions are re-read after), or null */
    public record Resize(long size, java.util.concurrent.CompletableFuture<Void> applied) implements Command {
    }

    private record DoItEnded(Throwable failure) implements Command {
    }

    private record StreamEnded(Throwable failure) implements Command {
    }

    private record CheckReady() implements Command {
    }

    public interface Report {
    }

    /** @param netlink attached through netlink (can be detached and re-attached) rather than the ioctls */
    public record Ready(String device, boolean netlink) implements Report {
    }

    public record AttachFailed(String reason) implements Report {
    }

    public record Detached(String device, String why) implements Report {
    }

    /** Kernel-visible flags: the ones the driver acts on, plus read-only. */
    static int kernelFlags(boolean readOnly, boolean trim) {
        int flags = Nbd.FLAG_HAS_FLAGS | Nbd.FLAG_SEND_FLUSH | Nbd.FLAG_SEND_FUA;
        if (readOnly) {
            return flags | Nbd.FLAG_READ_ONLY;
        }
        return trim ? flags | Nbd.FLAG_SEND_TRIM | Nbd.FLAG_SEND_WRITE_ZEROES : flags;
    }

    /** @param stats the device's I/O statistics, kept by the owner: its connections record into it */
    public static Behavior<Command> create(Params params, BlockBackend backend, IoStats stats, EngineSettings settings,
                                           ActorRef<Report> reportTo) {
        return Behaviors.setup(ctx -> Behaviors.withTimers(timers -> {
            // Named here: otherwise Pekko names the logger after the first caller, a timer's classic
            // ActorCell when that comes first, whose WARN level hid this actor's INFO lines.
            ctx.setLoggerName(KernelAttach.class);
            boolean readOnly = params.readOnly() || backend.readOnly();
            String requested = params.device();
            if (requested != null) {
                try {
                    NbdDevice.index(requested);
                } catch (IllegalArgumentException e) {
                    reportTo.tell(new AttachFailed(e.getMessage()));
                    return Behaviors.stopped();
                }
                OptionalInt owner = NbdDevice.servingPid(NbdDevice.index(requested));
                if (params.reattach()) {
                    if (owner.isEmpty()) {
                        reportTo.tell(new AttachFailed(requested + " is not connected: nothing to attach to (use map)"));
                        return Behaviors.stopped();
                    }
                    if (ProcessHandle.of(owner.getAsInt()).map(ProcessHandle::isAlive).orElse(false)
                            && owner.getAsInt() != ProcessHandle.current().pid()) {
                        reportTo.tell(new AttachFailed(requested + " is still served by pid " + owner.getAsInt()));
                        return Behaviors.stopped();
                    }
                } else if (owner.isPresent()) {
                    reportTo.tell(new AttachFailed(requested + " is busy (served by pid " + owner.getAsInt() + ")"));
                    return Behaviors.stopped();
                }
            } else if (!NbdDevice.driverPresent()) {
                reportTo.tell(new AttachFailed("no nbd driver: /sys/block/nbd0 is missing (modprobe nbd)"));
                return Behaviors.stopped();
            }
            Attachment attachment;
            try {
                if (params.reattach()) {
                    attachment = Attachment.reattach(params);
                } else {
                    attachment = params.netlink() && NbdNetlink.available()
                            ? Attachment.netlink(params, backend, readOnly, ctx)
                            : Attachment.ioctl(params, backend, readOnly);
                }
            } catch (NativeException e) {
                reportTo.tell(new AttachFailed(e.errno() == Errno.EBUSY
                        ? (requested != null ? requested : "the device") + " is busy (another process attached it first)"
                        : e.getMessage()));
                return Behaviors.stopped();
            } catch (AttachException e) {
                reportTo.tell(new AttachFailed(e.getMessage()));
                return Behaviors.stopped();
            }
            InFlightBudget budget = KernelBudget.of(ctx.getSystem()).deviceBudget(settings);
            BadClientLog badClients = new BadClientLog(settings.badClientLogInterval());
            Materializer mat = Materializer.matFromSystem(ctx.getSystem());
            for (FdConnection c : attachment.connections) {
                ctx.pipeToSelf(ConnectionIo.run(mat, settings, c, TransmissionFlow.create(backend, settings, false, false,
                                readOnly, budget, stats, attachment.path + "#" + c.fd(), badClients)),
                        (done, failure) -> new StreamEnded(failure));
            }
            if (attachment.device != null) { // ioctl: NBD_DO_IT blocks until disconnect
                NbdDevice device = attachment.device;
                Executor blocking = ctx.getSystem().dispatchers().lookup(
                        DispatcherSelector.fromConfig("rbdnbd.kernel.do-it-dispatcher"));
                ctx.pipeToSelf(CompletableFuture.runAsync(() -> {
                    try {
                        device.doIt();
                    } catch (NativeException e) {
                        throw new java.util.concurrent.CompletionException(e);
                    }
                }, blocking), (v, failure) -> new DoItEnded(failure));
            }
            timers.startTimerWithFixedDelay(new CheckReady(), Duration.ofMillis(20));
            return new Attached(ctx, timers, attachment, readOnly, params.reattachTimeoutSeconds(), backend.size() > 0,
                    reportTo).attaching();
        }));
    }

    /** A reason to refuse attaching that is not a failed system call. */
    private static final class AttachException extends Exception {
        private static final long serialVersionUID = 1L;

        AttachException(String message) {
            super(message);
        }
    }

    /** What attaching produced: the device, our ends of the sockets, and how to disconnect. */
    private static final class Attachment {
        final String path;
        final int index;
        final List<FdConnection> connections;
        /** The backend identifier given to the kernel over netlink (null on the ioctl path). */
        final String cookie;
        /** Set on the ioctl path, whose device fd runs NBD_DO_IT; null with netlink. */
        final NbdDevice device;

        private Attachment(String path, int index, List<FdConnection> connections, NbdDevice device, String cookie) {
            this.path = path;
            this.index = index;
            this.connections = connections;
            this.device = device;
            this.cookie = cookie;
        }

        static Attachment ioctl(Params params, BlockBackend backend, boolean readOnly)
                throws NativeException, AttachException {
            String path = params.device();
            if (path == null) {
                OptionalInt free = NbdDevice.firstFree();
                if (free.isEmpty()) {
                    throw new AttachException("no free nbd device (all /dev/nbdN are in use)");
                }
                path = "/dev/nbd" + free.getAsInt();
            }
            NbdDevice device;
            try {
                device = NbdDevice.open(path);
            } catch (NativeException e) {
                throw new AttachException(explainOpen(path, e));
            }
            int[] pair;
            try {
                pair = LibC.socketPair();
            } catch (NativeException e) {
                closeQuietly(device);
                throw e;
            }
            try {
                device.setBlockSize(512);
                device.setSize(backend.size());
                device.setFlags(kernelFlags(readOnly, params.trim()));
                device.setTimeout(params.ioTimeoutSeconds());
                device.setSocket(pair[0]);
            } catch (NativeException e) {
                try {
                    device.clearSocket();
                } catch (NativeException ignored) {
                    // nothing was attached
                }
                closeQuietly(device);
                closeFd(pair[1]);
                throw e;
            } finally {
                closeFd(pair[0]); // the kernel holds its own reference; ours would keep the socket alive
            }
            return new Attachment(path, device.index(), List.of(new FdConnection(pair[1])), device, null);
        }

        /**
         * Netlink CONNECT with {@link #NETLINK_SOCKETS} sockets and CAN_MULTI_CONN: the kernel keeps at
         * most 128 requests in flight per socket, so two give the engine its iodepth of 256.
         */
        static Attachment netlink(Params params, BlockBackend backend, boolean readOnly, ActorContext<Command> ctx)
                throws NativeException {
            int[] index = new int[1];
            List<FdConnection> ours = handOverSockets(kernelEnds -> {
                try (NbdNetlink nl = NbdNetlink.open()) {
                    index[0] = nl.connect(params.device() == null ? -1 : NbdDevice.index(params.device()), kernelEnds,
                            backend.size(), 512, params.ioTimeoutSeconds(),
                            kernelFlags(readOnly, params.trim()) | Nbd.FLAG_CAN_MULTI_CONN, params.reattachTimeoutSeconds(),
                            params.cookie());
                }
            });
            ctx.getLog().debug("netlink CONNECT gave /dev/nbd{}", index[0]);
            return new Attachment("/dev/nbd" + index[0], index[0], ours, null, params.cookie());
        }

        /** New sockets for a netlink device whose daemon died; the kernel replays what it held. */
        static Attachment reattach(Params params) throws NativeException {
            int index = NbdDevice.index(params.device());
            List<FdConnection> ours = handOverSockets(kernelEnds -> {
                try (NbdNetlink nl = NbdNetlink.open()) {
                    nl.reconnect(index, kernelEnds, params.cookie());
                }
            });
            return new Attachment(params.device(), index, ours, null, params.cookie());
        }

        @FunctionalInterface
        private interface KernelHandOver {
            void give(List<Integer> kernelEnds) throws NativeException;
        }

        /**
         * Makes {@link #NETLINK_SOCKETS} socketpairs and gives one end of each to the kernel; returns
         * our ends. Our copies of the kernel's ends are closed either way (the kernel holds its own
         * references; ours would keep the sockets alive after the kernel lets go).
         */
        private static List<FdConnection> handOverSockets(KernelHandOver handOver) throws NativeException {
            List<int[]> pairs = new ArrayList<>();
            try {
                for (int i = 0; i < NETLINK_SOCKETS; i++) {
                    pairs.add(LibC.socketPair());
                }
                handOver.give(pairs.stream().map(p -> p[0]).toList());
                return pairs.stream().map(p -> new FdConnection(p[1])).toList();
            } catch (NativeException e) {
                for (int[] p : pairs) {
                    closeFd(p[1]);
                }
                throw e;
            } finally {
                for (int[] p : pairs) {
                    closeFd(p[0]);
                }
            }
        }

        /**
         * Netlink RECONFIGURE (with the cookie), or NBD_SET_SIZE then a partition re-read.
         * {@code sizeApplied} runs once the kernel has the size, before the re-read: that reads
         * through the device, which may wait for whoever waits for the size (librbd's notification).
         */
        void resize(long size, Runnable sizeApplied) throws NativeException {
            if (device == null) {
                try (NbdNetlink nl = NbdNetlink.open()) {
                    nl.resize(index, size, cookie);
                }
                sizeApplied.run();
                return;
            }
            device.setSize(size);
            sizeApplied.run();
            try {
                device.rereadPartitions();
            } catch (NativeException e) {
                // EINVAL without a partition table: nothing to re-read
            }
        }

        void disconnect() throws NativeException {
            if (device != null) {
                device.disconnect();
            } else {
                try (NbdNetlink nl = NbdNetlink.open()) {
                    nl.disconnect(index);
                }
            }
        }
    }

    private static String explainOpen(String path, NativeException e) {
        return switch (e.errno()) {
            case Errno.ENOENT -> path + " does not exist (is the nbd driver loaded? modprobe nbd)";
            case Errno.EACCES, Errno.EPERM -> "cannot open " + path + ": permission denied (mapping needs root)";
            default -> "cannot open " + path + ": " + e.getMessage();
        };
    }

    private static void closeQuietly(NbdDevice d) {
        try {
            d.close();
        } catch (NativeException ignored) {
            // best effort on a failure path
        }
    }

    private static void closeFd(int fd) {
        try {
            LibC.closeFd(fd);
        } catch (NativeException ignored) {
            // best effort on a failure path
        }
    }

    /** State once the device has its sockets: waiting for readiness, then serving, then ending. */
    private static final class Attached {
        private final ActorContext<Command> ctx;
        private final TimerScheduler<Command> timers;
        private final Attachment a;
        private final boolean readOnly;
        private final ActorRef<Report> reportTo;
        private boolean ready;
        private boolean doItEnded;
        private int streamsLeft;
        private String why = "disconnected";
        private final int reattachTimeout;
        /** The image has a size the kernel must show before the device is usable. */
        private final boolean sized;

        private boolean hasCapacity() {
            try {
                return NbdDevice.kernelSize(a.index) > 0;
            } catch (java.io.IOException | NumberFormatException e) {
                return false;
            }
        }

        Attached(ActorContext<Command> ctx, TimerScheduler<Command> timers, Attachment a, boolean readOnly,
                 int reattachTimeout, boolean sized, ActorRef<Report> reportTo) {
            this.ctx = ctx;
            this.sized = sized;
            this.reattachTimeout = reattachTimeout;
            this.timers = timers;
            this.a = a;
            this.readOnly = readOnly;
            this.reportTo = reportTo;
            this.doItEnded = a.device == null;
            this.streamsLeft = a.connections.size();
        }

        Behavior<Command> attaching() {
            return Behaviors.receive(Command.class)
                    .onMessage(CheckReady.class, c -> {
                        // The kernel publishes the serving pid before it sets the capacity (nbd_start_device):
                        // a device shown before that is "zero sized" to whoever opens it first.
                        if (!ready && NbdDevice.servingPid(a.index).isPresent() && (!sized || hasCapacity())) {
                            ready = true;
                            timers.cancelAll();
                            setReadOnly();
                            ctx.getLog().info("{} ready ({} socket(s))", a.path, a.connections.size());
                            reportTo.tell(new Ready(a.path, a.device == null));
                        }
                        return Behaviors.same();
                    })
                    .onMessage(Resize.class, r -> {
                        try {
                            a.resize(r.size(), () -> {
                                if (r.applied() != null) {
                                    r.applied().complete(null);
                                }
                            });
                            ctx.getLog().info("{} resized to {} bytes", a.path, r.size());
                        } catch (NativeException e) {
                            ctx.getLog().error("{}: the image is now {} bytes but the kernel refused the size: {}",
                                    a.path, r.size(), e.getMessage());
                            if (r.applied() != null) {
                                r.applied().completeExceptionally(e);
                            }
                        }
                        return Behaviors.same();
                    })
                    .onMessage(Disconnect.class, d -> disconnect())
                    .onMessage(Stop.class, d -> a.device == null ? detach() : disconnect())
                    .onMessage(Detach.class, d -> a.device == null ? detach() : disconnect())
                    .onMessage(Abort.class, d -> {
                        why = "unmapped (forced: in-flight I/O failed)";
                        ctx.getLog().warn("{}: forced unmap, failing the I/O the kernel holds", a.path);
                        for (FdConnection c : a.connections) {
                            c.shutdownInput();
                            c.shutdownOutput();
                        }
                        try {
                            a.disconnect();
                        } catch (NativeException e) {
                            ctx.getLog().debug("{}: disconnect after forced shutdown: {}", a.path, e.getMessage());
                        }
                        return Behaviors.same();
                    })
                    .onMessage(DoItEnded.class, d -> {
                        doItEnded = true;
                        if (d.failure() != null) {
                            why = "NBD_DO_IT failed: " + d.failure().getCause().getMessage();
                        }
                        try {
                            a.device.clearQueue();
                            a.device.clearSocket();
                        } catch (NativeException e) {
                            ctx.getLog().debug("{}: clearing after disconnect: {}", a.path, e.getMessage());
                        }
                        closeQuietly(a.device);
                        for (FdConnection c : a.connections) {
                            c.shutdownInput(); // the kernel let go of its end: no more requests
                        }
                        return maybeDone();
                    })
                    .onMessage(StreamEnded.class, s -> {
                        streamsLeft--;
                        if (s.failure() != null) {
                            ctx.getLog().warn("{}: request stream ended: {}", a.path, s.failure().toString());
                        }
                        return maybeDone();
                    })
                    .build();
        }

        private Behavior<Command> disconnect() throws java.io.IOException {
            why = "unmapped";
            try {
                a.disconnect();
            } catch (NativeException e) {
                ctx.getLog().warn("{}: {}; shutting the sockets instead", a.path, e.getMessage());
                for (FdConnection c : a.connections) {
                    c.shutdownInput();
                }
            }
            return Behaviors.same();
        }

        /** Netlink only: stop reading; the streams answer what is in flight, then our sockets close. */
        private Behavior<Command> detach() throws java.io.IOException {
            why = "detached (the kernel holds the device for " + reattachTimeout + " s for attach)";
            for (FdConnection c : a.connections) {
                c.shutdownInput();
            }
            return Behaviors.same();
        }

        /**
         * The block device's own read-only flag (BLKROSET), set either way: it belongs to the
         * device node and outlives the mapping, so a read-write map must clear what an earlier
         * read-only one set (the kernel's NBD_FLAG_READ_ONLY alone leaves it).
         */
        private void setReadOnly() {
            try (NbdDevice d = NbdDevice.open(a.path)) {
                d.setReadOnly(readOnly);
            } catch (NativeException e) {
                ctx.getLog().warn("{}: {}", a.path, e.getMessage());
            }
        }

        private Behavior<Command> maybeDone() throws NativeException {
            if (!doItEnded || streamsLeft > 0) {
                return Behaviors.same();
            }
            for (FdConnection c : a.connections) {
                c.close();
            }
            timers.cancelAll();
            if (!ready) {
                reportTo.tell(new AttachFailed(a.path + ": the kernel ended the connection before it was ready ("
                        + why + ")"));
            } else {
                reportTo.tell(new Detached(a.path, why));
            }
            return Behaviors.stopped();
        }
    }
}
