package io.rbdnbd.it.uml;

import java.time.Duration;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * First tests inside the User-Mode Linux guest: the harness boots, the kernel NBD driver works with a
 * known good server (qemu-nbd), and the host's JVM runs in the guest. If these fail, fix the harness
 * or the machine before looking at rbdnbd's own kernel attach.
 */
class KernelNbdSmokeIT {
    @BeforeAll
    static void requireUml() {
        UmlGuest.assumeAvailable();
    }

    @Test
    void qemuNbdDeviceCarriesAnExt4FilesystemThroughTheKernelDriver() {
        UmlGuest.Result r = UmlGuest.run("1G", Duration.ofMinutes(4), UmlGuest.umlDir(), Map.of(),
                "bash", UmlGuest.guestScript("qemu-nbd-smoke.sh").toString());
        System.out.println("qemu-nbd smoke in UML: " + r.timings());
        r.assertSucceeded();
        assertTrue(r.output().contains("/sys/block/nbd0/size = 524288 "), r::describe);
        assertTrue(r.output().contains("QEMU_NBD_SMOKE_PASS"), r::describe);
    }

    @Test
    void hostJvmRunsInsideTheGuest() {
        List<String> java = UmlGuest.guestJava("-version");
        UmlGuest.Result r = UmlGuest.run("512M", Duration.ofMinutes(3), UmlGuest.umlDir(), Map.of(),
                java.toArray(String[]::new));
        System.out.println("java -version in UML (" + String.join(" ", java) + "): " + r.timings());
        r.assertSucceeded();
        assertTrue(r.output().contains("OpenJDK") || r.output().contains("Java(TM)"), r::describe);
        assertTrue(java.contains("-Xmx64m"), "guest JVMs must run with a small heap");
    }
}
