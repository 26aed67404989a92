package io.rbdnbd.actors;

import io.rbdnbd.engine.backend.BackendException;
import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.backend.ReopenableBackend;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.BehaviorBuilder;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.StashBuffer;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

import java.time.Duration;
import java.time.Instant;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * Keeps one image open for the device or export that owns it. When its {@link ReopenableBackend}
 * reports the handle lost, closes the dead handle (abandoning a close that hangs), then opens the
 * image again with exponential backoff and puts the new handle in place; after
 * {@code max-attempts} failed attempts it gives up, and the image answers EIO until its owner
 * stops. Opening and closing run on the {@code rbdnbd.reopen.dispatcher}, never on an actor
 * thread. Each image has its own supervisor: a fault in one leaves the others alone.
 */
public final class ImageSupervisor {
    private ImageSupervisor() {
    }

    /** Opens the image, blocking until it is open. */
    @FunctionalInterface
    public interface Opener {
        /** @throws BackendException naming the image and what failed */
        BlockBackend open();
    }

    public interface Command {
    }

    /** The image's handle was lost: sent by the {@link ReopenableBackend}'s listener. */
    public record HandleLost(ReopenableBackend.Lost lost) implements Command {
    }

    private record OldHandleClosed(Throwable failure) implements Command {
    }

    private record Attempt() implements Command {
    }

    private record AttemptEnded(boolean replaced, Throwable failure) implements Command {
    }

    /** What happened to the image, for its owner (and, later, for JMX). */
    public interface Report {
        String image();
    }

    /** The handle was lost; reopening. */
    public record ImageLost(String image, String cause) implements Report {
    }

    /** Reopen attempt {@code attempt} (1 for the first) failed; the next comes in {@code retryIn}. */
    public record ReopenFailed(String image, int attempt, String reason, Duration retryIn) implements Report {
    }

    /** Open again, after {@code attempts} attempts; requests were not served for {@code unavailableFor}. */
    public record Reopened(String image, int attempts, Duration unavailableFor) implements Report {
    }

    /** No more attempts: every request gets EIO. */
    public record GaveUp(String image, int attempts, String reason) implements Report {
    }

    /** What opening an image off the actor gave: the backend, or (backend null) why not. */
    public record OpenResult(BlockBackend backend, Throwable failure) {
    }

    /**
     * The first behavior of an actor that serves an image. It opens the image off the actor, on the
     * same blocking dispatcher as reopens (against a dead cluster an open takes up to
     * connect-timeout, and no actor's messages, another device's among them, may wait for it), and
     * stashes the commands that arrive meanwhile (past the stash's capacity they are dropped). Then
     * it continues as {@code opened} with the backend, or tells {@code failed} why not, as the
     * operator should read it, and stops.
     *
     * @param resultType the actor's own command that carries the result: {@code wrap} builds it,
     *                   {@code result} reads it back
     */
    public static <C, R extends C> Behavior<C> opening(ActorContext<C> ctx, StashBuffer<C> stash,
                                                       ReopenSettings settings, Opener opener, Class<R> resultType,
                                                       Function<OpenResult, R> wrap, Function<R, OpenResult> result,
                                                       Function<BlockBackend, Behavior<C>> opened,
                                                       Consumer<String> failed) {
        ctx.pipeToSelf(onBlocking(ctx.getSystem().dispatchers().lookup(DispatcherSelector.fromConfig(
                        settings.dispatcher())), opener::open),
                (backend, failure) -> wrap.apply(new OpenResult(backend, failure)));
        return BehaviorBuilder.<C>create()
                .onMessage(resultType, m -> {
                    OpenResult r = result.apply(m);
                    if (r.backend() != null) {
                        return stash.unstashAll(opened.apply(r.backend()));
                    }
                    failed.accept(openFailure(r.failure()));
                    return Behaviors.stopped();
                })
                .onAnyMessage(m -> {
                    if (!stash.isFull()) {
                        stash.stash(m);
                    }
                    return Behaviors.same();
                })
                .build();
    }

    /** Runs {@code task} on the blocking dispatcher; a full dispatcher is a failure of the task. */
    private static <T> CompletableFuture<T> onBlocking(Executor blocking, Supplier<T> task) {
        try {
            return CompletableFuture.supplyAsync(task, blocking);
        } catch (RejectedExecutionException e) {
            return CompletableFuture.failedFuture(e);
        }
    }

    /**
     * Why an open failed, as the operator should read it: the message of what Backends.open throws
     * for a bad image or spec (BackendException, IllegalArgumentException), else the exception.
     */
    private static String openFailure(Throwable failure) {
        Throwable c = BackendException.unwrap(failure);
        return c instanceof IllegalArgumentException ? c.getMessage() : reason(c);
    }

    /**
     * Wraps the image's first handle (opened by the caller) and spawns its supervisor as a child of
     * {@code ctx} named {@code name}. The owner serves the returned backend and closes it when done.
     */
    public static ReopenableBackend supervise(ActorContext<?> ctx, String name, BlockBackend handle, Opener opener,
                                              ReopenSettings settings, ActorRef<Report> reportTo) {
        AtomicReference<ActorRef<Command>> supervisor = new AtomicReference<>();
        ReopenableBackend image = new ReopenableBackend(handle, settings.requestWait(),
                lost -> supervisor.get().tell(new HandleLost(lost)));
        supervisor.set(ctx.spawn(create(image, opener, settings, reportTo), name)); // before any call can fail
        return image;
    }

    /** The supervisor of {@code image}, whose listener must send {@link HandleLost} to it. */
    public static Behavior<Command> create(ReopenableBackend image, Opener opener, ReopenSettings settings,
                                           ActorRef<Report> reportTo) {
        return Behaviors.setup(ctx -> Behaviors.withTimers(timers -> {
            ctx.setLoggerName(ImageSupervisor.class);
            Executor blocking = ctx.getSystem().dispatchers().lookup(DispatcherSelector.fromConfig(settings.dispatcher()));
            return new Supervising(ctx, timers, image, opener, settings, reportTo, blocking).up();
        }));
    }

    private static final class Supervising {
        private final ActorContext<Command> ctx;
        private final TimerScheduler<Command> timers;
        private final ReopenableBackend image;
        private final Opener opener;
        private final ReopenSettings settings;
        private final ActorRef<Report> reportTo;
        private final Executor blocking;
        private Instant lostAt;

        Supervising(ActorContext<Command> ctx, TimerScheduler<Command> timers, ReopenableBackend image, Opener opener,
                    ReopenSettings settings, ActorRef<Report> reportTo, Executor blocking) {
            this.ctx = ctx;
            this.timers = timers;
            this.image = image;
            this.opener = opener;
            this.settings = settings;
            this.reportTo = reportTo;
            this.blocking = blocking;
        }

        /** Serving (or given up): waits for a lost handle. */
        Behavior<Command> up() {
            return Behaviors.receive(Command.class)
                    .onMessage(HandleLost.class, m -> lost(m.lost()))
                    .build();
        }

        private Behavior<Command> lost(ReopenableBackend.Lost lost) {
            lostAt = lost.at();
            String cause = lost.cause().getMessage();
            ctx.getLog().warn("{}: the image handle was lost ({}); requests in flight were answered EIO, new ones wait"
                    + " up to {} while the image is reopened", image.describe(), cause, human(settings.requestWait()));
            reportTo.tell(new ImageLost(image.describe(), cause));
            BlockBackend dead = lost.handle();
            ctx.pipeToSelf(blocking(dead::close).thenCompose(stage -> stage)
                            .orTimeout(settings.closeTimeout().toNanos(), TimeUnit.NANOSECONDS),
                    (v, failure) -> new OldHandleClosed(failure));
            return Behaviors.receive(Command.class)
                    .onMessage(OldHandleClosed.class, this::oldHandleClosed)
                    .build();
        }

        private Behavior<Command> oldHandleClosed(OldHandleClosed m) {
            Throwable failure = BackendException.unwrap(m.failure());
            if (failure instanceof TimeoutException) {
                ctx.getLog().warn("{}: closing the lost handle did not finish within {}; abandoned", image.describe(),
                        human(settings.closeTimeout()));
            } else if (failure != null) {
                ctx.getLog().info("{}: closing the lost handle failed (as a lost handle may): {}", image.describe(),
                        failure.toString());
            }
            timers.startSingleTimer(new Attempt(), settings.backoff(1, ThreadLocalRandom.current().nextDouble()));
            return reopening(1);
        }

        private Behavior<Command> reopening(int attempt) {
            return Behaviors.receive(Command.class)
                    .onMessage(Attempt.class, a -> {
                        ctx.pipeToSelf(blocking(() -> image.replace(
                                        Objects.requireNonNull(opener.open(), "the opener returned no backend"))),
                                (replaced, failure) -> new AttemptEnded(Boolean.TRUE.equals(replaced), failure));
                        return Behaviors.same();
                    })
                    .onMessage(AttemptEnded.class, e -> e.failure() == null ? opened(attempt, e.replaced())
                            : failed(attempt, reason(e.failure())))
                    .build();
        }

        private Behavior<Command> opened(int attempts, boolean replaced) {
            Duration unavailable = Duration.between(lostAt, Instant.now());
            if (replaced) {
                ctx.getLog().info("{}: reopened after {} attempt(s); requests were not served for {}",
                        image.describe(), attempts, human(unavailable));
                reportTo.tell(new Reopened(image.describe(), attempts, unavailable));
            } else {
                ctx.getLog().info("{}: opened again while being closed; the new handle was closed", image.describe());
            }
            return up();
        }

        private Behavior<Command> failed(int attempt, String reason) {
            if (settings.maxAttempts() > 0 && attempt >= settings.maxAttempts()) {
                image.giveUp(attempt + " reopen attempt(s) failed, the last with: " + reason);
                ctx.getLog().error("{}: giving up after {} failed reopen attempt(s), the last with: {}; every request"
                        + " gets EIO until the device is unmapped or the export stopped", image.describe(), attempt,
                        reason);
                reportTo.tell(new GaveUp(image.describe(), attempt, reason));
                return up();
            }
            Duration next = settings.backoff(attempt + 1, ThreadLocalRandom.current().nextDouble());
            ctx.getLog().warn("{}: reopen attempt {} failed: {}; next attempt in {}", image.describe(), attempt, reason,
                    human(next));
            reportTo.tell(new ReopenFailed(image.describe(), attempt, reason, next));
            timers.startSingleTimer(new Attempt(), next);
            return reopening(attempt + 1);
        }

        private <T> CompletableFuture<T> blocking(Supplier<T> task) {
            return onBlocking(blocking, task);
        }
    }

    /** "250 ms", "1.2 s" */
    private static String human(Duration d) {
        long ms = d.toMillis();
        return ms < 1000 ? ms + " ms" : String.format(java.util.Locale.ROOT, "%.1f s", ms / 1000.0);
    }

    private static String reason(Throwable failure) {
        Throwable c = BackendException.unwrap(failure);
        return c instanceof BackendException ? c.getMessage() : c.toString();
    }
}
