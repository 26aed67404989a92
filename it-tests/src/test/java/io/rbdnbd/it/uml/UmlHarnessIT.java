package io.rbdnbd.it.uml;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The contract of uml-run.sh as tests rely on it: exit status, environment, work directory and
 * files come through; timeouts and guest deaths are reported as such; nothing is left behind.
 */
class UmlHarnessIT {
    @TempDir
    Path tmp;

    @BeforeAll
    static void requireUml() {
        UmlGuest.assumeAvailable();
    }

    @Test
    void exitStatusEnvironmentAndFilesComeBack() throws IOException {
        String tricky = "a b'c\"$HOME\\";
        UmlGuest.Result r = UmlGuest.run("256M", Duration.ofMinutes(2), tmp, Map.of("TRICKY", tricky),
                "bash", "-c", "printf '%s\\n' \"$TRICKY\"; pwd; echo \"guest=$UML_GUEST\"; nproc;"
                        + " lsmod | grep -c '^nbd '; echo from-guest > result.txt; exit 7");
        System.out.println("exit/env/files: " + r.timings());
        assertEquals(UmlGuest.Status.OK, r.status(), r::describe);
        assertEquals(7, r.exitCode(), r::describe);
        assertEquals(List.of(tricky, tmp.toRealPath().toString(), "guest=1", "1", "1"),
                r.output().lines().toList(), r::describe);
        assertEquals("from-guest\n", Files.readString(tmp.resolve("result.txt")));
        assertNothingLeftBehind();
    }

    @Test
    void timeoutIsReportedAndTheGuestIsGone() throws IOException {
        UmlGuest.Result r = UmlGuest.invoke(Map.of("UML_RUN_TMPDIR", tmp.toString()), List.of("-m", "256M", "-N"),
                Duration.ofSeconds(10), tmp, Map.of(), List.of("bash", "-c", "echo sleeping; sleep 300"), true);
        System.out.println("timeout: " + r.timings());
        assertEquals(UmlGuest.Status.TIMEOUT, r.status(), r::describe);
        assertEquals(124, r.exitCode(), r::describe);
        assertTrue(r.output().contains("sleeping"), r::describe);
        assertTrue(r.total().compareTo(Duration.ofSeconds(40)) < 0, r::describe);
        try (Stream<Path> left = Files.list(tmp)) {
            assertEquals(List.of(), left.toList(), "run directory not removed");
        }
        assertNothingLeftBehind();
    }

    @Test
    void guestDeathIsReportedWithThePanic() {
        UmlGuest.Result r = UmlGuest.run("256M", Duration.ofMinutes(2), tmp, Map.of(),
                "sh", "-c", "echo c > /proc/sysrq-trigger");
        System.out.println("guest death: " + r.timings());
        assertEquals(UmlGuest.Status.GUEST_DIED, r.status(), r::describe);
        assertEquals(125, r.exitCode(), r::describe);
        assertTrue(r.harnessLog().contains("Kernel panic"), r::describe);
        assertNothingLeftBehind();
    }

    /** No host process of any guest of ours survives its run (they all carry "umid=umlrun-" in their command line). */
    private static void assertNothingLeftBehind() {
        List<String> left = ProcessHandle.allProcesses()
                .filter(h -> h.info().commandLine().map(c -> c.contains("umid=umlrun-")).orElse(false))
                .map(h -> h.pid() + " " + h.info().commandLine().orElse("?"))
                .toList();
        assertEquals(List.of(), left, "UML processes left behind");
    }
}
