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

import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ExportGuardianTest {
    private static final ActorTestKit testKit = ActorTestKit.create();
    private static final EngineSettings settings = EngineSettings.from(ConfigFactory.load());

    @TempDir
    Path dir;

    @AfterAll
    static void shutdown() {
        testKit.shutdownTestKit();
    }

    private ExportGuardian.Params params(ImageSpec image, long createSize, Path... sockets) {
        return new ExportGuardian.Params(image, false, createSize, "", List.of(sockets), List.of());
    }

    @Test
    void servesUntilStopThenDrainsClosesAndRemovesTheSocket() throws Exception {
        TestProbe<ExportGuardian.Report> reports = testKit.createTestProbe();
        Path sock = dir.resolve("s");
        Path image = dir.resolve("disk.img");
        ActorRef<ExportGuardian.Command> guardian = testKit.spawn(ExportGuardian.create(
                params(new ImageSpec.FileImage(image), 1 << 20, sock), settings, reports.getRef()));
        ExportGuardian.Started started = reports.expectMessageClass(ExportGuardian.Started.class);
        assertEquals(List.of("nbd+unix:///?socket=" + sock), started.uris());
        assertEquals(1 << 20, Files.size(image));
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(sock));
            ByteBuffer greeting = ByteBuffer.allocate(18);
            while (greeting.hasRemaining()) {
                ch.read(greeting);
            }
            assertEquals(0x4e42444d41474943L, greeting.getLong(0));
        }
        guardian.tell(new ExportGuardian.Stop());
        assertTrue(reports.expectMessageClass(ExportGuardian.Stopped.class, Duration.ofSeconds(10)).clean());
        reports.expectTerminated(guardian);
        assertFalse(Files.exists(sock));
    }

    @Test
    void aBadImageFailsWithTheReasonAndStops() {
        TestProbe<ExportGuardian.Report> reports = testKit.createTestProbe();
        ActorRef<ExportGuardian.Command> guardian = testKit.spawn(ExportGuardian.create(
                params(new ImageSpec.FileImage(dir.resolve("missing.img")), -1, dir.resolve("s")), settings,
                reports.getRef()));
        ExportGuardian.Failed failed = reports.expectMessageClass(ExportGuardian.Failed.class);
        assertTrue(failed.reason().contains("missing.img") && failed.reason().contains("ENOENT"), failed.reason());
        reports.expectTerminated(guardian);
        assertFalse(Files.exists(dir.resolve("s")), "nothing bound");
    }

    @Test
    void aSocketInUseFailsAndReleasesTheBackend() {
        TestProbe<ExportGuardian.Report> reports = testKit.createTestProbe();
        Path sock = dir.resolve("s");
        ActorRef<ExportGuardian.Command> first = testKit.spawn(ExportGuardian.create(
                params(new ImageSpec.MemoryImage(1 << 20), -1, sock), settings, reports.getRef()));
        reports.expectMessageClass(ExportGuardian.Started.class);
        ActorRef<ExportGuardian.Command> second = testKit.spawn(ExportGuardian.create(
                params(new ImageSpec.MemoryImage(1 << 20), -1, sock), settings, reports.getRef()));
        ExportGuardian.Failed failed = reports.expectMessageClass(ExportGuardian.Failed.class);
        assertTrue(failed.reason().contains("in use"), failed.reason());
        reports.expectTerminated(second);
        first.tell(new ExportGuardian.Stop());
        reports.expectMessageClass(ExportGuardian.Stopped.class);
    }

    @Test
    void anImpossibleMemoryImageFailsInsteadOfHanging() {
        TestProbe<ExportGuardian.Report> reports = testKit.createTestProbe();
        ActorRef<ExportGuardian.Command> guardian = testKit.spawn(ExportGuardian.create(
                params(new ImageSpec.MemoryImage(Long.MAX_VALUE), -1, dir.resolve("s")), settings, reports.getRef()));
        ExportGuardian.Failed failed = reports.expectMessageClass(ExportGuardian.Failed.class);
        assertTrue(failed.reason().contains("larger than this machine's RAM"), failed.reason());
        reports.expectTerminated(guardian);
    }
    /**
     * Opening an image can take as long as connect-timeout (a dead cluster): it must not hold an
     * actor's thread, or enough slow opens would stall every other export and device. Here the
     * opens block for real (read-only opens of FIFOs wait for a writer), more of them than the
     * default dispatcher has threads, and another export still starts.
     */
    @Test
    void slowOpensDoNotHoldUpAnotherExport() throws Exception {
        int slow = 24;
        List<Path> fifos = new java.util.ArrayList<>();
        List<TestProbe<ExportGuardian.Report>> slowReports = new java.util.ArrayList<>();
        for (int i = 0; i < slow; i++) {
            Path fifo = dir.resolve("fifo" + i);
            assertEquals(0, new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor());
            fifos.add(fifo);
            TestProbe<ExportGuardian.Report> r = testKit.createTestProbe();
            slowReports.add(r);
            testKit.spawn(ExportGuardian.create(new ExportGuardian.Params(new ImageSpec.FileImage(fifo), true, -1, "",
                    List.of(dir.resolve("slow" + i)), List.of()), settings, r.getRef()));
        }
        TestProbe<ExportGuardian.Report> reports = testKit.createTestProbe();
        ActorRef<ExportGuardian.Command> fast = testKit.spawn(ExportGuardian.create(
                params(new ImageSpec.FileImage(dir.resolve("disk.img")), 1 << 20, dir.resolve("s")), settings,
                reports.getRef()));
        reports.expectMessageClass(ExportGuardian.Started.class, Duration.ofSeconds(10));
        for (TestProbe<ExportGuardian.Report> r : slowReports) {
            r.expectNoMessage(Duration.ofMillis(10));
        }
        for (Path fifo : fifos) { // a writer releases each blocked open; a FIFO is no image, so each fails
            try (java.io.FileOutputStream w = new java.io.FileOutputStream(fifo.toFile())) {
                w.flush();
            }
        }
        for (TestProbe<ExportGuardian.Report> r : slowReports) {
            r.expectMessageClass(ExportGuardian.Failed.class, Duration.ofSeconds(10));
        }
        fast.tell(new ExportGuardian.Stop());
        reports.expectMessageClass(ExportGuardian.Stopped.class, Duration.ofSeconds(10));
    }
}
