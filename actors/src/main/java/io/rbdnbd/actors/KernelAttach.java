package io.rbdnbd.actors;

import io.rbdnbd.engine.backend.BackendException;
import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.protocol.BadClientLog;
import io.rbdnbd.engine.stream.ConnectionIo;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.engine.stream.FdConnection;
import io.rbdnbd.engine.stream.InFlightBudget;
import io.rbdnbd.engine.stream.IoStats;
import io.rbdnbd.engine.stream.TransmissionFlow;
import io.rbdnbd.nativeio.Errno;
import io.rbdnbd.nativeio.NativeException;
import io.rbdnbd.nativeio.NbdDevice;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.stream.Materializer;

import java.time.Duration;
import java.util.OptionalInt;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;

/**
 * Serves one backend on a kernel NBD device: connects it ({@link KernelConnection}: netlink, or
 * the ioctls with NBD_DO_IT blocking on a thread of the kernel-attach dispatcher, never the
 * default one), runs the engine's transmission flow on each of our sockets, and carries the
 * device through its phases (attaching until the kernel serves it, serving, ending). Reports
 * {@link Ready} once the kernel serves the device, and {@link Detached} when it no longer does.
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
            KernelConnection attachment;
            try {
                attachment = params.reattach() ? KernelConnection.Netlink.reattach(params)
                        : KernelConnection.connect(params, backend.size(), readOnly);
                ctx.getLog().debug("{} connected ({})", attachment.path(), attachment.getClass().getSimpleName());
            } catch (NativeException e) {
                reportTo.tell(new AttachFailed(e.errno() == Errno.EBUSY
                        ? (requested != null ? requested : "the device") + " is busy (another process attached it first)"
                        : e.getMessage()));
                return Behaviors.stopped();
            } catch (KernelConnection.AttachException e) {
                reportTo.tell(new AttachFailed(e.getMessage()));
                return Behaviors.stopped();
            }
            InFlightBudget budget = KernelBudget.of(ctx.getSystem()).deviceBudget(settings);
            BadClientLog badClients = new BadClientLog(settings.badClientLogInterval());
            Materializer mat = Materializer.matFromSystem(ctx.getSystem());
            for (FdConnection c : attachment.connections()) {
                ctx.pipeToSelf(ConnectionIo.run(mat, settings, c, TransmissionFlow.create(backend, settings, false, false,
                                readOnly, budget, stats, attachment.path() + "#" + c.fd(), badClients)),
                        (done, failure) -> new StreamEnded(failure));
            }
            if (attachment instanceof KernelConnection.Ioctl ioctl) { // NBD_DO_IT blocks until disconnect
                Executor blocking = ctx.getSystem().dispatchers().lookup(
                        DispatcherSelector.fromConfig("rbdnbd.kernel.do-it-dispatcher"));
                ctx.pipeToSelf(CompletableFuture.runAsync(() -> {
                    try {
                        ioctl.doIt();
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

    /** State once the device has its sockets: waiting for readiness, then serving, then ending. */
    private static final class Attached {
        private final ActorContext<Command> ctx;
        private final TimerScheduler<Command> timers;
        private final KernelConnection a;
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
                return NbdDevice.kernelSize(a.index()) > 0;
            } catch (java.io.IOException | NumberFormatException e) {
                return false;
            }
        }

        Attached(ActorContext<Command> ctx, TimerScheduler<Command> timers, KernelConnection a, boolean readOnly,
                 int reattachTimeout, boolean sized, ActorRef<Report> reportTo) {
            this.ctx = ctx;
            this.sized = sized;
            this.reattachTimeout = reattachTimeout;
            this.timers = timers;
            this.a = a;
            this.readOnly = readOnly;
            this.reportTo = reportTo;
            this.doItEnded = !(a instanceof KernelConnection.Ioctl); // no NBD_DO_IT to wait for
            this.streamsLeft = a.connections().size();
        }

        Behavior<Command> attaching() {
            return Behaviors.receive(Command.class)
                    .onMessage(CheckReady.class, c -> {
                        // The kernel publishes the serving pid before it sets the capacity (nbd_start_device):
                        // a device shown before that is "zero sized" to whoever opens it first.
                        if (!ready && NbdDevice.servingPid(a.index()).isPresent() && (!sized || hasCapacity())) {
                            ready = true;
                            timers.cancelAll();
                            setReadOnly();
                            ctx.getLog().info("{} ready ({} socket(s))", a.path(), a.connections().size());
                            reportTo.tell(new Ready(a.path(), a instanceof KernelConnection.Netlink));
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
                            ctx.getLog().info("{} resized to {} bytes", a.path(), r.size());
                        } catch (NativeException e) {
                            ctx.getLog().error("{}: the image is now {} bytes but the kernel refused the size: {}",
                                    a.path(), r.size(), e.getMessage());
                            if (r.applied() != null) {
                                r.applied().completeExceptionally(e);
                            }
                        }
                        return Behaviors.same();
                    })
                    .onMessage(Disconnect.class, d -> disconnect())
                    .onMessage(Stop.class, d -> a instanceof KernelConnection.Netlink ? detach() : disconnect())
                    .onMessage(Detach.class, d -> a instanceof KernelConnection.Netlink ? detach() : disconnect())
                    .onMessage(Abort.class, d -> {
                        why = "unmapped (forced: in-flight I/O failed)";
                        ctx.getLog().warn("{}: forced unmap, failing the I/O the kernel holds", a.path());
                        for (FdConnection c : a.connections()) {
                            c.shutdownInput();
                            c.shutdownOutput();
                        }
                        try {
                            a.disconnect();
                        } catch (NativeException e) {
                            ctx.getLog().debug("{}: disconnect after forced shutdown: {}", a.path(), e.getMessage());
                        }
                        return Behaviors.same();
                    })
                    .onMessage(DoItEnded.class, d -> {
                        doItEnded = true;
                        if (d.failure() != null) {
                            why = "NBD_DO_IT failed: " + BackendException.unwrap(d.failure()).getMessage();
                        }
                        try {
                            ((KernelConnection.Ioctl) a).release();
                        } catch (NativeException e) {
                            ctx.getLog().debug("{}: clearing after disconnect: {}", a.path(), e.getMessage());
                        }
                        for (FdConnection c : a.connections()) {
                            c.shutdownInput(); // the kernel let go of its end: no more requests
                        }
                        return maybeDone();
                    })
                    .onMessage(StreamEnded.class, s -> {
                        streamsLeft--;
                        if (s.failure() != null) {
                            ctx.getLog().warn("{}: request stream ended: {}", a.path(), s.failure().toString());
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
                ctx.getLog().warn("{}: {}; shutting the sockets instead", a.path(), e.getMessage());
                for (FdConnection c : a.connections()) {
                    c.shutdownInput();
                }
            }
            return Behaviors.same();
        }

        /** Netlink only: stop reading; the streams answer what is in flight, then our sockets close. */
        private Behavior<Command> detach() throws java.io.IOException {
            why = "detached (the kernel holds the device for " + reattachTimeout + " s for attach)";
            for (FdConnection c : a.connections()) {
                c.shutdownInput();
            }
            return Behaviors.same();
        }

        /** Every connection sets the device's read-only flag as asked (see {@link KernelConnection#setReadOnly}). */
        private void setReadOnly() {
            try {
                a.setReadOnly(readOnly);
            } catch (NativeException e) {
                ctx.getLog().warn("{}: {}", a.path(), e.getMessage());
            }
        }

        private Behavior<Command> maybeDone() throws NativeException {
            if (!doItEnded || streamsLeft > 0) {
                return Behaviors.same();
            }
            for (FdConnection c : a.connections()) {
                c.close();
            }
            timers.cancelAll();
            if (!ready) {
                reportTo.tell(new AttachFailed(a.path() + ": the kernel ended the connection before it was ready ("
                        + why + ")"));
            } else {
                reportTo.tell(new Detached(a.path(), why));
            }
            return Behaviors.stopped();
        }
    }
}
