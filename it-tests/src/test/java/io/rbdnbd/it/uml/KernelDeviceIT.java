package io.rbdnbd.it.uml;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * rbdnbd's own kernel attach on a real nbd driver (the UML guest): {@code bin/rbd-nbd map},
 * {@code unmap}, {@code attach} and {@code list-mapped} against file images, one guest boot per
 * scenario of {@code uml/guest/kernel-device.sh}.
 */
class KernelDeviceIT {
    @BeforeAll
    static void requireUml() {
        UmlGuest.assumeAvailable();
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"filesystem", "direct-io", "lifecycle", "kill"})
    void scenario(String name) {
        Path home = Path.of(System.getProperty("rbdnbd.home", "..")).toAbsolutePath().normalize();
        UmlGuest.Result r = UmlGuest.run("1G", Duration.ofMinutes(8), UmlGuest.umlDir(),
                Map.of("RBDNBD_HOME", home.toString()),
                "bash", UmlGuest.guestScript("kernel-device.sh").toString(), name);
        System.out.println("kernel-device " + name + " in UML: " + r.timings());
        System.out.println(r.output());
        r.assertSucceeded();
        assertTrue(r.output().contains("PASS " + name), r::describe);
    }
}
