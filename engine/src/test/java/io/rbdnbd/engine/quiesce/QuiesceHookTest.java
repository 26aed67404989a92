package io.rbdnbd.engine.quiesce;

import com.typesafe.config.ConfigFactory;
import io.rbdnbd.engine.backend.BackendException;
import io.rbdnbd.nativeio.Errno;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class QuiesceHookTest {
    private static final String DEVICE = "/dev/nbd7";

    @TempDir
    Path dir;

    private Path script(String name, String body) throws IOException {
        Path p = dir.resolve(name);
        Files.writeString(p, body);
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString("rwxr-xr-x"));
        return p;
    }

    private static QuiesceHook hook(Object path, Duration timeout) {
        return new QuiesceHook(new QuiesceHook.Settings(path.toString(), timeout), DEVICE);
    }

    private static void await(CompletionStage<Void> stage) throws Exception {
        stage.toCompletableFuture().get(30, TimeUnit.SECONDS);
    }

    private static BackendException failure(CompletionStage<Void> stage) {
        ExecutionException e = assertThrows(ExecutionException.class,
                () -> stage.toCompletableFuture().get(30, TimeUnit.SECONDS));
        return assertInstanceOf(BackendException.class, e.getCause());
    }

    @Test
    void defaultsComeFromReferenceConf() {
        QuiesceHook.Settings s = QuiesceHook.Settings.from(ConfigFactory.load());
        assertEquals("/usr/libexec/rbd-nbd/rbd-nbd_quiesce", s.hook());
        assertEquals(Duration.ofSeconds(60), s.timeout());
        assertEquals("/x", s.withHook("/x").hook());
    }

    @Test
    void scriptWithoutShebangRunsUnderShWithDeviceAndCommand() throws Exception {
        Path calls = dir.resolve("calls");
        Path p = script("hook", "echo \"$1 $2\" >> '" + calls + "'\necho to-stdout\necho to-stderr >&2\n");
        QuiesceHook h = hook(p, Duration.ofSeconds(30));
        await(h.quiesce());
        await(h.unquiesce());
        assertEquals(List.of(DEVICE + " quiesce", DEVICE + " unquiesce"), Files.readAllLines(calls));
    }

    @Test
    void failingHookFailsWithItsExitStatusAndLastStderrLine() throws Exception {
        Path p = script("failing", "#!/bin/sh\necho first >&2\necho 'cannot freeze /mnt' >&2\necho noise\nexit 3\n");
        BackendException e = failure(hook(p, Duration.ofSeconds(30)).quiesce());
        assertEquals(3, e.errno());
        assertTrue(e.getMessage().contains(p + " " + DEVICE + " quiesce"), e.getMessage());
        assertTrue(e.getMessage().contains("exited 3: cannot freeze /mnt"), e.getMessage());
    }

    @Test
    void missingHookFails() {
        BackendException e = failure(hook(dir.resolve("nowhere"), Duration.ofSeconds(30)).quiesce());
        assertEquals(Errno.ENOENT, e.errno());
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());

        // without a slash the shell searches PATH and reports it missing
        BackendException onPath = failure(hook("rbdnbd-no-such-quiesce-hook", Duration.ofSeconds(30)).quiesce());
        assertEquals(Errno.ENOENT, onPath.errno());
        assertTrue(onPath.getMessage().contains("exited 127"), onPath.getMessage());
    }

    @Test
    void hookThatIsNotExecutableFails() throws Exception {
        Path p = script("plain", "exit 0\n");
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString("rw-r--r--"));
        BackendException e = failure(hook(p, Duration.ofSeconds(30)).quiesce());
        assertEquals(Errno.EACCES, e.errno());
    }

    @Test
    void hookOutlivingTheTimeoutIsKilledWithItsChildren() throws Exception {
        Path pid = dir.resolve("sleep.pid");
        Path p = script("slow", "sleep 30 &\necho $! > '" + pid + "'\necho 'still freezing' >&2\nwait\n");
        long start = System.nanoTime();
        BackendException e = failure(hook(p, Duration.ofMillis(500)).quiesce());
        assertEquals(Errno.ETIMEDOUT, e.errno());
        assertTrue(e.getMessage().contains("did not finish within 500 ms; killed: still freezing"), e.getMessage());
        assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(10), "took too long");
        long child = Long.parseLong(Files.readString(pid).trim());
        assertFalse(running(child), "the hook's child " + child + " survived");
    }

    @Test
    void backgroundChildHoldingTheOutputDoesNotDelayTheResult() throws Exception {
        Path pid = dir.resolve("bg.pid");
        Path p = script("detach", "sleep 30 &\necho $! > '" + pid + "'\nexit 0\n");
        long start = System.nanoTime();
        try {
            await(hook(p, Duration.ofSeconds(20)).quiesce());
            assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(10), "waited for the child");
        } finally {
            ProcessHandle.of(Long.parseLong(Files.readString(pid).trim())).ifPresent(ProcessHandle::destroyForcibly);
        }
    }

    /** Alive and not a zombie (a killed orphan may wait for a reaper that never comes in a container). */
    private static boolean running(long pid) throws InterruptedException {
        for (int i = 0; i < 50; i++) {
            try {
                String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
                char state = stat.charAt(stat.lastIndexOf(')') + 2);
                if (state == 'Z' || state == 'X') {
                    return false;
                }
            } catch (IOException gone) {
                return false;
            }
            Thread.sleep(100);
        }
        return true;
    }
}
