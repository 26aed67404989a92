package io.rbdnbd.it.uml;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * RBD images on a real kernel nbd driver: a one-node Ceph cluster inside the UML guest (its own
 * loopback), {@code rbd-nbd map} of an image, a snapshot and an exclusive mapping, resize, unmap
 * by device and by spec, data checked against {@code rbd export} ({@code uml/guest/kernel-rbd.sh}).
 */
class KernelRbdIT {
    @BeforeAll
    static void requireUml() {
        UmlGuest.assumeAvailable();
    }

    @Test
    void rbdImagesOnKernelDevices() {
        Path home = Path.of(System.getProperty("rbdnbd.home", "..")).toAbsolutePath().normalize();
        UmlGuest.Result r = UmlGuest.run("2G", Duration.ofMinutes(20), UmlGuest.umlDir(),
                Map.of("RBDNBD_HOME", home.toString()),
                "bash", UmlGuest.guestScript("kernel-rbd.sh").toString());
        System.out.println("kernel-rbd in UML: " + r.timings());
        System.out.println(r.output());
        r.assertSucceeded();
        assertTrue(r.output().contains("PASS kernel-rbd"), r::describe);
    }
}
