package io.rbdnbd.actors;

import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.stream.ConnectionIo;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.engine.stream.FdConnection;
import io.rbdnbd.engine.stream.InFlightBudget;
import io.rbdnbd.engine.stream.TransmissionFlow;
import io.rbdnbd.nativeio.Errno;
import io.rbdnbd.nativeio.LibC;
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
     */
    public record Params(String device, boolean readOnly, int ioTimeoutSeconds) {
    }

    public interface Command {
    }

    /** Disconnect the device (NBD_DISCONNECT); in-flight requests are answered first. */
    public record Disconnect() implements Command {
    }

    private record DoItEnded(Throwable failure) implements Command {
    }

    private record StreamEnded(Throwable failure) implements Command {
    }

    private record CheckReady() implements Command {
    }

    public interface Report {
    }

    public record Ready(String device) implements Report {
    }

    public record AttachFailed(String reason) implements Report {
    }

    public record Detached(String device, String why) implements Report {
    }

    /** Kernel-visible flags: the ones the driver acts on, plus read-only. */
    static int kernelFlags(boolean readOnly) {
        int flags = Nbd.FLAG_HAS_FLAGS | Nbd.FLAG_SEND_FLUSH | Nbd.FLAG_SEND_FUA;
        return readOnly ? flags | Nbd.FLAG_READ_ONLY : flags | Nbd.FLAG_SEND_TRIM | Nbd.FLAG_SEND_WRITE_ZEROES;
    }

    public static Behavior<Command> create(Params params, BlockBackend backend, EngineSettings settings,
                                           ActorRef<Report> reportTo) {
        return Behaviors.setup(ctx -> Behaviors.withTimers(timers -> {
            boolean readOnly = params.readOnly() || backend.readOnly();
            String path;
            if (params.device() != null) {
                path = params.device();
            } else {
                OptionalInt free = NbdDevice.firstFree();
                if (free.isEmpty()) {
                    reportTo.tell(new AttachFailed(NbdDevice.driverPresent()
                            ? "no free nbd device (all /dev/nbdN are in use)"
                            : "no nbd driver: /sys/block/nbd0 is missing (modprobe nbd)"));
                    return Behaviors.stopped();
                }
                path = "/dev/nbd" + free.getAsInt();
            }
            int index;
            try {
                index = NbdDevice.index(path);
            } catch (IllegalArgumentException e) {
                reportTo.tell(new AttachFailed(e.getMessage()));
                return Behaviors.stopped();
            }
            OptionalInt owner = NbdDevice.servingPid(index);
            if (owner.isPresent()) {
                reportTo.tell(new AttachFailed(path + " is busy (served by pid " + owner.getAsInt() + ")"));
                return Behaviors.stopped();
            }
            NbdDevice device;
            int[] pair;
            try {
                device = NbdDevice.open(path);
            } catch (NativeException e) {
                reportTo.tell(new AttachFailed(explainOpen(path, e)));
                return Behaviors.stopped();
            }
            try {
                pair = LibC.socketPair();
            } catch (NativeException e) {
                closeQuietly(device);
                reportTo.tell(new AttachFailed(e.getMessage()));
                return Behaviors.stopped();
            }
            try {
                device.setBlockSize(512);
                device.setSize(backend.size());
                device.setFlags(kernelFlags(readOnly));
                device.setTimeout(params.ioTimeoutSeconds());
                device.setSocket(pair[0]);
            } catch (NativeException e) {
                try {
                    device.clearSocket();
                } catch (NativeException ignored) {
                    // nothing was attached
                }
                closeQuietly(device);
                closeFd(pair[0]);
                closeFd(pair[1]);
                reportTo.tell(new AttachFailed(e.errno() == Errno.EBUSY
                        ? path + " is busy (another process attached it first)" : e.getMessage()));
                return Behaviors.stopped();
            }
            closeFd(pair[0]); // the kernel holds its own reference now; ours would keep the socket alive
            FdConnection connection = new FdConnection(pair[1]);
            ctx.pipeToSelf(ConnectionIo.run(Materializer.matFromSystem(ctx.getSystem()), settings, connection,
                            TransmissionFlow.create(backend, settings, false, false, readOnly,
                                    new InFlightBudget(settings.maxInFlightBytes()), path)),
                    (done, failure) -> new StreamEnded(failure));
            Executor blocking = ctx.getSystem().dispatchers().lookup(
                    DispatcherSelector.fromConfig("rbdnbd.kernel.do-it-dispatcher"));
            ctx.pipeToSelf(CompletableFuture.runAsync(() -> {
                try {
                    device.doIt();
                } catch (NativeException e) {
                    throw new java.util.concurrent.CompletionException(e);
                }
            }, blocking), (v, failure) -> new DoItEnded(failure));
            timers.startTimerWithFixedDelay(new CheckReady(), Duration.ofMillis(20));
            return new Attached(ctx, timers, device, connection, readOnly, reportTo).attaching();
        }));
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

    /** State once the device has the socket: waiting for readiness, then serving, then ending. */
    private static final class Attached {
        private final ActorContext<Command> ctx;
        private final TimerScheduler<Command> timers;
        private final NbdDevice device;
        private final FdConnection connection;
        private final boolean readOnly;
        private final ActorRef<Report> reportTo;
        private boolean ready;
        private boolean doItEnded;
        private boolean streamEnded;
        private String why = "disconnected";

        Attached(ActorContext<Command> ctx, TimerScheduler<Command> timers, NbdDevice device, FdConnection connection,
                 boolean readOnly, ActorRef<Report> reportTo) {
            this.ctx = ctx;
            this.timers = timers;
            this.device = device;
            this.connection = connection;
            this.readOnly = readOnly;
            this.reportTo = reportTo;
        }

        Behavior<Command> attaching() {
            return Behaviors.receive(Command.class)
                    .onMessage(CheckReady.class, c -> {
                        if (!ready && NbdDevice.servingPid(device.index()).isPresent()) {
                            ready = true;
                            timers.cancelAll();
                            if (readOnly) {
                                try {
                                    device.setReadOnly(true);
                                } catch (NativeException e) {
                                    ctx.getLog().warn("{}: {}", device.path(), e.getMessage());
                                }
                            }
                            ctx.getLog().info("{} ready", device.path());
                            reportTo.tell(new Ready(device.path()));
                        }
                        return Behaviors.same();
                    })
                    .onMessage(Disconnect.class, d -> {
                        why = "unmapped";
                        try {
                            device.disconnect();
                        } catch (NativeException e) {
                            ctx.getLog().warn("{}: {}; shutting the socket instead", device.path(), e.getMessage());
                            connection.shutdownInput();
                        }
                        return Behaviors.same();
                    })
                    .onMessage(DoItEnded.class, d -> {
                        doItEnded = true;
                        if (d.failure() != null) {
                            why = "NBD_DO_IT failed: " + d.failure().getCause().getMessage();
                        }
                        try {
                            device.clearQueue();
                            device.clearSocket();
                        } catch (NativeException e) {
                            ctx.getLog().debug("{}: clearing after disconnect: {}", device.path(), e.getMessage());
                        }
                        closeQuietly(device);
                        connection.shutdownInput(); // the kernel let go of its end: no more requests
                        return maybeDone();
                    })
                    .onMessage(StreamEnded.class, s -> {
                        streamEnded = true;
                        if (s.failure() != null) {
                            ctx.getLog().warn("{}: request stream ended: {}", device.path(), s.failure().toString());
                        }
                        return maybeDone();
                    })
                    .build();
        }

        private Behavior<Command> maybeDone() throws NativeException {
            if (!doItEnded || !streamEnded) {
                return Behaviors.same();
            }
            connection.close();
            timers.cancelAll();
            if (!ready) {
                reportTo.tell(new AttachFailed(device.path() + ": the kernel ended the connection before it was ready ("
                        + why + ")"));
            } else {
                reportTo.tell(new Detached(device.path(), why));
            }
            return Behaviors.stopped();
        }
    }
}
