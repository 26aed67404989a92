package io.rbdnbd.it.uml;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * No acknowledged write is lost when the daemon dies: fio with crc32c verify and periodic fsync on
 * /dev/nbdN over a RBD image, SIGKILL of the daemon at a random moment, 10 rounds alternating
 * attach-with-cookie (netlink) and a fresh map (ioctl), fio's verify state checked against
 * {@code rbd export} each round ({@code uml/guest/crash-consistency.sh}, a Ceph cluster inside the guest).
 */
class CrashConsistencyIT {
    @BeforeAll
    static void requireUml() {
        UmlGuest.assumeAvailable();
    }

    @Test
    void acknowledgedWritesSurviveSigkillOfTheDaemon() {
        Path home = Path.of(System.getProperty("rbdnbd.home", "..")).toAbsolutePath().normalize();
        UmlGuest.Result r = UmlGuest.run("2G", Duration.ofMinutes(20), UmlGuest.umlDir(),
                Map.of("RBDNBD_HOME", home.toString(), "ROUNDS", "10"),
                "bash", UmlGuest.guestScript("crash-consistency.sh").toString());
        System.out.println("crash-consistency in UML: " + r.timings());
        System.out.println(r.output());
        r.assertSucceeded();
        assertTrue(r.output().contains("PASS crash-consistency 10 rounds, acknowledged writes lost: 0"), r::describe);
    }
}
