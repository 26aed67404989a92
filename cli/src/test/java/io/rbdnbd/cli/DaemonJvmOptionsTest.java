package io.rbdnbd.cli;

import com.typesafe.config.ConfigFactory;
import io.rbdnbd.actors.KernelBudget;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

class DaemonJvmOptionsTest {
    private static final List<String> LAUNCHER = List.of("-Dprogram.name=rbd-nbd", "-XX:MaxDirectMemorySize=256m",
            "-Xmx256m", "-XX:+UseParallelGC");
    private static final List<String> SIZED = List.of("-Xmx401m", "-XX:MaxDirectMemorySize=65m");

    @Test
    void theDaemonGetsItsMemoryFromTheConfigurationNotFromTheLauncher() {
        assertEquals(List.of("-Dprogram.name=rbd-nbd", "-XX:+UseParallelGC", "-Xmx401m", "-XX:MaxDirectMemorySize=65m"),
                DaemonCommand.daemonJvmOptions(LAUNCHER, "", SIZED));
    }

    @Test
    void whatTheUserSetWins() {
        List<String> ours = List.of("-Dprogram.name=rbd-nbd", "-XX:MaxDirectMemorySize=256m", "-Xmx256m", "-Xmx2g");
        assertEquals(List.of("-Dprogram.name=rbd-nbd", "-Xmx256m", "-Xmx2g", "-XX:MaxDirectMemorySize=65m"),
                DaemonCommand.daemonJvmOptions(ours, "-Xmx2g -XX:+UseSerialGC", SIZED),
                "the user's -Xmx2g comes last on the JVM's command line, so it wins");
    }

    @Test
    void theDefaultsGiveTheDaemon() {
        assertEquals(List.of("-Xmx401m", "-XX:MaxDirectMemorySize=81m"),
                KernelBudget.bound(ConfigFactory.load()).jvmOptions(), "64 devices, 128 MiB in flight together");
    }
}
