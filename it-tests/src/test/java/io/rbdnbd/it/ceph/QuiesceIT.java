package io.rbdnbd.it.ceph;

import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.backend.QuiesceHandler;
import io.rbdnbd.engine.backend.ReopenableBackend;
import io.rbdnbd.engine.backend.ScriptedBackend;
import io.rbdnbd.engine.quiesce.QuiesceHook;
import io.rbdnbd.it.Commands;
import io.rbdnbd.nativeio.Errno;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Ceph's rbd-nbd {@code --quiesce} below the daemon: an RBD backend's quiesce watch against a
 * real cluster, with real hook scripts, and {@code rbd snap create} from another client.
 */
class QuiesceIT {
    private static final String DEVICE = "/dev/nbd9";
    private static final Duration SNAP_TIMEOUT = Duration.ofSeconds(120);
    private static CephCluster ceph;
    private static RbdImages images;

    @TempDir
    Path dir;

    @BeforeAll
    static void cluster() {
        ceph = CephCluster.shared();
        images = new RbdImages(ceph);
    }

    @AfterAll
    static void stop() {
        images.shutdown();
    }

    @AfterEach
    void removeImages() throws Exception {
        images.cleanUp();
    }

    private static <T> T await(CompletionStage<T> stage) throws Exception {
        return stage.toCompletableFuture().get(60, TimeUnit.SECONDS);
    }

    private String newImage(String name) {
        return images.create(name, "64M");
    }

    private BlockBackend open(String image) {
        return images.open(RbdImages.rbd(image), false);
    }

    /** A hook script without a {@code #!} line that appends {@code DEV COMMAND} to {@code calls} and exits {@code status}. */
    private QuiesceHook hook(Path calls, int status) throws IOException {
        Path p = dir.resolve("hook-" + status);
        Files.writeString(p, "echo \"$1 $2\" >> '" + calls + "'\necho \"hook: $2 $1\" >&2\nexit " + status + "\n");
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString("rwxr-xr-x"));
        return new QuiesceHook(new QuiesceHook.Settings(p.toString(), Duration.ofSeconds(30)), DEVICE);
    }

    /** Passes calls to a hook and records them. */
    private static final class Recording implements QuiesceHandler {
        final QuiesceHandler hook;
        final List<String> calls = new CopyOnWriteArrayList<>();

        Recording(QuiesceHandler hook) {
            this.hook = hook;
        }

        @Override
        public CompletionStage<Void> quiesce() {
            calls.add("quiesce");
            return hook.quiesce();
        }

        @Override
        public CompletionStage<Void> unquiesce() {
            calls.add("unquiesce");
            return hook.unquiesce();
        }
    }

    private Commands.Result snapCreate(String snapshot) {
        return ceph.run(SNAP_TIMEOUT, "rbd", "snap", "create", "--no-progress", snapshot);
    }

    private boolean snapshotExists(String image, String snap) {
        return ceph.rbd("snap", "ls", image).lines().anyMatch(l -> l.trim().split("\\s+").length > 1
                && l.trim().split("\\s+")[1].equals(snap));
    }

    /** The unquiesce runs after the snapshot has been acknowledged: wait a little for it. */
    private static void awaitLines(Path file, int n) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!(Files.exists(file) && Files.readAllLines(file).size() >= n) && System.nanoTime() < deadline) {
            Thread.sleep(50);
        }
    }

    @Test
    void snapshotByAnotherClientRunsTheHookAroundIt() throws Exception {
        String image = newImage("quiesce");
        BlockBackend backend = open(image);
        // a write takes the exclusive lock: the snapshot is then taken by this client, on request
        await(backend.write(0, ByteString.fromArray(new byte[65536]), false));
        Path calls = dir.resolve("calls");
        Recording handler = new Recording(hook(calls, 0));
        assertTrue(backend.watchQuiesce(handler).isPresent());

        Commands.Result r = snapCreate(image + "@s1");
        assertTrue(r.succeeded(), r.describe());
        awaitLines(calls, 2);
        assertEquals(List.of(DEVICE + " quiesce", DEVICE + " unquiesce"), Files.readAllLines(calls));
        assertEquals(List.of("quiesce", "unquiesce"), handler.calls);
        assertTrue(snapshotExists(image, "s1"));

        // and again, now with the lock elsewhere: the rbd tool takes it to snapshot an idle image
        BlockBackend idle = open(newImage("quiesce-idle"));
        Path idleCalls = dir.resolve("idle-calls");
        assertTrue(idle.watchQuiesce(hook(idleCalls, 0)).isPresent());
        Commands.Result again = snapCreate(images.image(1) + "@s2");
        assertTrue(again.succeeded(), again.describe());
        awaitLines(idleCalls, 2);
        assertEquals(List.of(DEVICE + " quiesce", DEVICE + " unquiesce"), Files.readAllLines(idleCalls));
    }

    @Test
    void aFailingHookFailsTheSnapshotAndIsNotUnquiesced() throws Exception {
        String image = newImage("quiesce-fail");
        BlockBackend backend = open(image);
        Path calls = dir.resolve("calls");
        Recording handler = new Recording(hook(calls, 1));
        AutoCloseable watch = backend.watchQuiesce(handler).orElseThrow();

        Commands.Result r = snapCreate(image + "@bad");
        assertFalse(r.succeeded(), r.describe());
        assertFalse(snapshotExists(image, "bad"));
        Thread.sleep(500); // an unquiesce, were one wrongly sent, would follow the failure at once
        assertEquals(List.of(DEVICE + " quiesce"), Files.readAllLines(calls));
        assertEquals(List.of("quiesce"), handler.calls);

        // closing the watch ends it: the next snapshot goes ahead without the hook
        watch.close();
        Commands.Result after = snapCreate(image + "@unwatched");
        assertTrue(after.succeeded(), after.describe());
        assertEquals(List.of("quiesce"), handler.calls);
    }

    @Test
    void closingWhileTheHookRunsFailsTheSnapshotAndUndoesTheQuiesce() throws Exception {
        String image = newImage("quiesce-close");
        BlockBackend backend = open(image);
        Path calls = dir.resolve("calls");
        Path slow = dir.resolve("slow-hook");
        Files.writeString(slow, "echo \"$1 $2\" >> '" + calls + "'\n[ \"$2\" = quiesce ] && sleep 3\nexit 0\n");
        Files.setPosixFilePermissions(slow, PosixFilePermissions.fromString("rwxr-xr-x"));
        Recording handler = new Recording(new QuiesceHook(new QuiesceHook.Settings(slow.toString(),
                Duration.ofSeconds(30)), DEVICE));
        assertTrue(backend.watchQuiesce(handler).isPresent());

        CompletableFuture<Commands.Result> snap = CompletableFuture.supplyAsync(() -> snapCreate(image + "@closing"));
        awaitLines(calls, 1); // the quiesce hook is running
        await(backend.close()); // answers the quiesce -ESHUTDOWN on the hook's behalf
        Commands.Result r = snap.get(SNAP_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        assertFalse(r.succeeded(), r.describe());
        assertFalse(snapshotExists(image, "closing"));
        // the hook's quiesce succeeded after all, too late: it is undone
        awaitLines(calls, 2);
        assertEquals(List.of(DEVICE + " quiesce", DEVICE + " unquiesce"), Files.readAllLines(calls));
        assertEquals(List.of("quiesce", "unquiesce"), handler.calls);
    }

    @Test
    void aReopenedImageKeepsItsQuiesceWatch() throws Exception {
        String image = newImage("quiesce-reopen");
        ScriptedBackend first = new ScriptedBackend(open(image));
        ReopenableBackend reopenable = new ReopenableBackend(first, Duration.ofSeconds(30), lost -> { });
        Path calls = dir.resolve("calls");
        Recording handler = new Recording(hook(calls, 0));
        assertTrue(reopenable.watchQuiesce(handler).isPresent());

        first.setFault(ScriptedBackend.fatalAfter(0, Errno.ESHUTDOWN)); // as a blocklisted client's calls
        assertFalse(reopenable.read(0, 4096).toCompletableFuture().handle((v, t) -> t == null).get(30, TimeUnit.SECONDS));
        await(first.close()); // what the owner does with a lost handle
        assertTrue(reopenable.replace(open(image)));

        Commands.Result r = snapCreate(image + "@reopened");
        assertTrue(r.succeeded(), r.describe());
        awaitLines(calls, 2);
        assertEquals(List.of(DEVICE + " quiesce", DEVICE + " unquiesce"), Files.readAllLines(calls));
        assertEquals(List.of("quiesce", "unquiesce"), handler.calls);
    }
}
