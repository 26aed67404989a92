package io.rbdnbd.actors;

import com.typesafe.config.ConfigFactory;
import io.rbdnbd.engine.backend.ImageSpec;
import io.rbdnbd.engine.stream.EngineSettings;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** What can be tested of a device without an nbd driver: starting and failing. */
class DeviceSupervisorTest {
    private static final ActorTestKit testKit = ActorTestKit.create();
    private static final EngineSettings settings = EngineSettings.from(ConfigFactory.load());

    @TempDir
    Path dir;

    @AfterAll
    static void shutdown() {
        testKit.shutdownTestKit();
    }

    private ActorRef<DeviceSupervisor.Command> map(ImageSpec image, long createSize, String device,
                                                   TestProbe<DeviceSupervisor.Report> reports) {
        return testKit.spawn(DeviceSupervisor.create(new DeviceSupervisor.Params(image, createSize,
                        new KernelAttach.Params(device, false, true, 0, false, "cookie", 0, false), Duration.ofSeconds(1),
                        ConfigFactory.load(), DeviceSupervisor.KERNEL, null),
                settings, reports.getRef()::tell));
    }

    @Test
    void anImageThatCannotBeOpenedFailsTheMapWithTheReasonAndIsNotRetried() {
        TestProbe<DeviceSupervisor.Report> reports = testKit.createTestProbe();
        ActorRef<DeviceSupervisor.Command> device = map(new ImageSpec.FileImage(dir.resolve("missing.img")), -1,
                "/dev/nbd0", reports);
        DeviceSupervisor.MapFailed failed = reports.expectMessageClass(DeviceSupervisor.MapFailed.class);
        assertTrue(failed.reason().contains("missing.img") && failed.reason().contains("ENOENT"), failed.reason());
        reports.expectTerminated(device);
        reports.expectNoMessage(Duration.ofMillis(200));
    }

    @Test
    void aDeviceThatCannotBeAttachedClosesItsImageAndFailsTheMap() {
        TestProbe<DeviceSupervisor.Report> reports = testKit.createTestProbe();
        ActorRef<DeviceSupervisor.Command> device = map(new ImageSpec.FileImage(dir.resolve("disk.img")), 1 << 20,
                "/dev/sda", reports);
        DeviceSupervisor.MapFailed failed = reports.expectMessageClass(DeviceSupervisor.MapFailed.class,
                Duration.ofSeconds(5));
        assertTrue(failed.reason().contains("not an nbd device"), failed.reason());
        reports.expectTerminated(device);
    }
}
