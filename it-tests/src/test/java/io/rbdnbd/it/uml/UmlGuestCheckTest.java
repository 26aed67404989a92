package io.rbdnbd.it.uml;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.opentest4j.AssertionFailedError;
import org.opentest4j.TestAbortedException;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * How {@link UmlGuest#assumeAvailable()} decides between "fail" (UML missing or broken: the project
 * installs it, so that is a defect) and "skip" (this host cannot run UML at all), using fake kernels
 * that print what the real one prints when the host refuses it. No guest is booted here.
 */
class UmlGuestCheckTest {
    @TempDir
    Path tmp;

    /** A fake linux.uml: answers --version, otherwise prints {@code console} and exits 1. */
    private Map<String, String> fakeKernelEnv(Path kernel, String console) throws IOException {
        Files.writeString(kernel, "#!/bin/sh\n[ \"$1\" = --version ] && { echo 6.1.999; exit 0; }\n"
                + "cat <<'END'\n" + console + "\nEND\nexit 1\n");
        Files.setPosixFilePermissions(kernel, PosixFilePermissions.fromString("rwxr-xr-x"));
        Path modules = tmp.resolve("modules");
        Files.createDirectories(modules.resolve("6.1.999"));
        return Map.of("UML_RUN_KERNEL", kernel.toString(), "UML_RUN_MODULES", modules.toString(),
                "UML_RUN_TMPDIR", tmp.toString());
    }

    @Test
    void missingKernelFailsAndSaysHowToInstall() {
        UmlGuest.Availability a = UmlGuest.probe(Map.of("UML_RUN_KERNEL", tmp.resolve("linux.uml").toString()));
        assertEquals(UmlGuest.Availability.Kind.NOT_INSTALLED, a.kind(), a::toString);
        AssertionFailedError e = assertThrows(AssertionFailedError.class, () -> UmlGuest.assumeAvailable(a));
        assertTrue(e.getMessage().contains("scripts/install-deps.sh test"), e.getMessage());
    }

    @Test
    void kernelWithoutModulesFailsAndSaysHowToInstall() throws IOException {
        Path kernel = tmp.resolve("linux.uml");
        fakeKernelEnv(kernel, "unused");
        UmlGuest.Availability a = UmlGuest.probe(Map.of("UML_RUN_KERNEL", kernel.toString(),
                "UML_RUN_MODULES", tmp.resolve("none").toString()));
        assertEquals(UmlGuest.Availability.Kind.NOT_INSTALLED, a.kind(), a::toString);
        AssertionFailedError e = assertThrows(AssertionFailedError.class, () -> UmlGuest.assumeAvailable(a));
        assertTrue(e.getMessage().contains("scripts/install-deps.sh test"), e.getMessage());
    }

    @Test
    void forbiddenPtraceSkipsNamingTheReason() throws IOException {
        Path kernel = tmp.resolve("linux.uml");
        Map<String, String> env = fakeKernelEnv(kernel, """
                Core dump limits :
                Checking that ptrace can change system call numbers...check_ptrace : ptrace failed: \
                Operation not permitted""");
        UmlGuest.Availability a = UmlGuest.probe(env);
        assertEquals(UmlGuest.Availability.Kind.UNSUPPORTED_HOST, a.kind(), a::toString);
        TestAbortedException e = assertThrows(TestAbortedException.class, () -> UmlGuest.assumeAvailable(a));
        assertTrue(e.getMessage().contains("ptrace"), e.getMessage());
        assertTrue(e.getMessage().contains("cannot run User-Mode Linux"), e.getMessage());
    }

    @Test
    void noexecTempDirSkipsNamingTheReason() throws IOException {
        Path kernel = tmp.resolve("linux.uml");
        Map<String, String> env = fakeKernelEnv(kernel, """
                Checking if /dev/shm is on tmpfs...OK
                Checking PROT_EXEC mmap in /dev/shm...
                /dev/shm must be not mounted noexec""");
        UmlGuest.Availability a = UmlGuest.probe(env);
        assertEquals(UmlGuest.Availability.Kind.UNSUPPORTED_HOST, a.kind(), a::toString);
        TestAbortedException e = assertThrows(TestAbortedException.class, () -> UmlGuest.assumeAvailable(a));
        assertTrue(e.getMessage().contains("noexec"), e.getMessage());
    }

    /** What Debian 12's and 13's kernels print on CPUs with AMX (measured): not a dead guest, a wrong kernel. */
    @Test
    void kernelTooOldForTheCpuFailsNamingTheKernelAndTheFix() throws IOException {
        Path kernel = tmp.resolve("linux.uml");
        Map<String, String> env = fakeKernelEnv(kernel, """
                Linux version 6.1.999 (debian-kernel@lists.debian.org)
                userspace - ptrace set fp regs failed, errno = 14
                Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b""");
        UmlGuest.Availability a = UmlGuest.probe(env);
        assertEquals(UmlGuest.Availability.Kind.KERNEL_INCOMPATIBLE, a.kind(), a::toString);
        AssertionFailedError e = assertThrows(AssertionFailedError.class, () -> UmlGuest.assumeAvailable(a));
        assertTrue(e.getMessage().contains("cannot run on this CPU"), e.getMessage());
        assertTrue(e.getMessage().contains(kernel + " (6.1.999)"), e.getMessage());
        assertTrue(e.getMessage().contains("Debian unstable"), e.getMessage());
        assertTrue(e.getMessage().contains("scripts/install-deps.sh test"), e.getMessage());
        assertFalse(e.getMessage().contains("GUEST_DIED"), e.getMessage());
    }

    @Test
    void theSummaryLineNotTheExitCodeSaysWhatHappened() {
        UmlGuest.Result ran = UmlGuest.parse(List.of("x"), 124, "out\n",
                "uml-run: status=ok exit=124 kernel_ms=1500 boot_ms=2000 cmd_ms=30 total_ms=2300"
                        + " kernel=/var/cache/x%20y/linux.uml version=7.2.7\n", Duration.ZERO, false);
        assertEquals(UmlGuest.Status.OK, ran.status());
        assertEquals("/var/cache/x y/linux.uml (7.2.7)", ran.kernel());
        assertEquals(124, ran.exitCode());
        assertEquals(2000, ran.bootToCommand().toMillis());
        UmlGuest.Result timedOut = UmlGuest.parse(List.of("x"), 124, "",
                "uml-run: timed out after 5s\numl-run: status=timeout exit=124 kernel_ms=1500 boot_ms=2000 cmd_ms=-1"
                        + " total_ms=5100\n", Duration.ZERO, false);
        assertEquals(UmlGuest.Status.TIMEOUT, timedOut.status());
        assertNull(timedOut.commandTime());
        UmlGuest.Result garbled = UmlGuest.parse(List.of("x"), 1, "", "bash: oops\n",
                Duration.ZERO, false);
        assertEquals(UmlGuest.Status.UNKNOWN, garbled.status());
    }

    @Test
    void unexplainedGuestDeathFailsWithTheConsole() throws IOException {
        Path kernel = tmp.resolve("linux.uml");
        Map<String, String> env = fakeKernelEnv(kernel, "Kernel panic - not syncing: something unexpected");
        UmlGuest.Availability a = UmlGuest.probe(env);
        assertEquals(UmlGuest.Availability.Kind.BROKEN, a.kind(), a::toString);
        AssertionFailedError e = assertThrows(AssertionFailedError.class, () -> UmlGuest.assumeAvailable(a));
        assertTrue(e.getMessage().contains("something unexpected"), e.getMessage());
        assertTrue(e.getMessage().contains("GUEST_DIED"), e.getMessage());
    }
}
