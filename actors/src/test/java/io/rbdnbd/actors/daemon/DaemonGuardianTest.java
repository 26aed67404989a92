package io.rbdnbd.actors.daemon;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import io.rbdnbd.engine.stream.EngineSettings;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The daemon's actors with a stand-in kernel: many devices, each failing alone. */
class DaemonGuardianTest {
    private static final ActorTestKit testKit = ActorTestKit.create();
    private static final Config config = ConfigFactory.load();
    private static final Config defaults = config.getConfig(DeviceRequest.DEFAULTS);

    @TempDir
    Path dir;

    @AfterAll
    static void shutdown() {
        testKit.shutdownTestKit();
    }

    private final AtomicInteger exits = new AtomicInteger();
    private final javax.management.MBeanServer mbeans = javax.management.MBeanServerFactory.newMBeanServer();
    private final io.rbdnbd.actors.jmx.JmxRegistry jmx = new io.rbdnbd.actors.jmx.JmxRegistry(mbeans);

    private ActorRef<DaemonGuardian.Command> daemon(FakeAttach kernel, boolean exitWhenIdle) {
        return testKit.spawn(DaemonGuardian.create(new DaemonGuardian.Params(config, EngineSettings.from(config), true,
                Duration.ofSeconds(1), exitWhenIdle, Duration.ofMillis(300), kernel, exits::incrementAndGet, jmx,
                DeviceProcess.in(dir.resolve("run")))));
    }

    private static DeviceRequest device(String entry) {
        return DeviceRequest.from(ConfigFactory.parseString(entry), defaults);
    }

    private static DaemonGuardian.MapReply map(ActorRef<DaemonGuardian.Command> d, String entry) {
        TestProbe<DaemonGuardian.MapReply> p = testKit.createTestProbe();
        d.tell(new DaemonGuardian.Map(device(entry), p.getRef()));
        return p.expectMessageClass(DaemonGuardian.MapReply.class, Duration.ofSeconds(10));
    }

    private static DaemonGuardian.Reply unmap(ActorRef<DaemonGuardian.Command> d, String target, boolean force) {
        TestProbe<DaemonGuardian.Reply> p = testKit.createTestProbe();
        d.tell(new DaemonGuardian.Unmap(target, -1, force, p.getRef()));
        return p.expectMessageClass(DaemonGuardian.Reply.class, Duration.ofSeconds(10));
    }

    private static List<DaemonGuardian.Device> list(ActorRef<DaemonGuardian.Command> d) {
        TestProbe<DaemonGuardian.Listing> p = testKit.createTestProbe();
        d.tell(new DaemonGuardian.ListDevices(p.getRef()));
        return p.expectMessageClass(DaemonGuardian.Listing.class).devices();
    }

    private static boolean io(FakeAttach kernel, String device) {
        TestProbe<Boolean> p = testKit.createTestProbe();
        kernel.devices.get(device).tell(new FakeAttach.Io(4096, ByteString.fromString("data of " + device), p.getRef()));
        return p.expectMessageClass(Boolean.class, Duration.ofSeconds(5));
    }

    @Test
    void twoImagesMappedAtOnceEachUnmappedByDeviceOrImage() {
        FakeAttach kernel = new FakeAttach(true);
        ActorRef<DaemonGuardian.Command> d = daemon(kernel, false);
        DaemonGuardian.MapReply a = map(d, "image = \"memory:1M\"");
        DaemonGuardian.MapReply b = map(d, "image = \"file:" + dir.resolve("b.img") + "\", size = 1M, cookie = c-b");
        assertNull(a.error(), a.error());
        assertNull(b.error(), b.error());
        assertNotEquals(a.device(), b.device());
        assertEquals("c-b", b.cookie());
        List<DaemonGuardian.Device> devices = list(d);
        assertEquals(List.of(a.device(), b.device()), devices.stream().map(DaemonGuardian.Device::device).toList());
        long pidA = devices.get(0).pid();
        long pidB = devices.get(1).pid();
        assertNotEquals(pidA, pidB, "each device has its own process");
        assertEquals(List.of(pidA, pidB), List.of(a.pid(), b.pid()), "map answers with the id list-mapped shows");
        for (long pid : new long[] {pidA, pidB}) {
            assertNotEquals(ProcessHandle.current().pid(), pid);
            assertEquals("rbd-nbd", comm(pid), "ps -C rbd-nbd lists it");
        }
        assertTrue(io(kernel, a.device()) && io(kernel, b.device()));
        assertNull(unmap(d, "file:" + dir.resolve("b.img"), false).error());
        assertEquals("unmapped", kernel.lastCommand.get(b.device()));
        assertFalse(ProcessHandle.of(pidB).map(ProcessHandle::isAlive).orElse(false), "its process is gone with it");
        assertEquals(List.of(pidA), list(d).stream().map(DaemonGuardian.Device::pid).toList());
        assertNull(unmap(d, a.device(), false).error());
        assertTrue(list(d).isEmpty());
        assertTrue(unmap(d, a.device(), false).error().contains("is not mapped"));
        assertEquals(0, exits.get(), "a foreground daemon stays without devices");
    }

    private static String comm(long pid) {
        try {
            return java.nio.file.Files.readString(java.nio.file.Path.of("/proc/" + pid + "/comm")).trim();
        } catch (java.io.IOException e) {
            return "(no process " + pid + ")";
        }
    }

    private static void awaitState(FakeAttach kernel, String device, String state) {
        io.rbdnbd.engine.Await.until(() -> state.equals(kernel.lastCommand.get(device)));
        assertEquals(state, kernel.lastCommand.get(device));
    }

    /** As with Ceph's per-device process: SIGTERM to a device's process unmaps it, SIGKILL drops its server. */
    @Test
    void signalsToADevicesProcessActOnThatDeviceAlone() {
        FakeAttach netlink = new FakeAttach(true);
        ActorRef<DaemonGuardian.Command> n = daemon(netlink, false);
        String a = map(n, "image = \"memory:1M\"").device();
        String b = map(n, "image = \"memory:1M\"").device();
        String c = map(n, "image = \"memory:1M\"").device();
        java.util.Map<String, Long> pids = new java.util.HashMap<>();
        list(n).forEach(x -> pids.put(x.device(), x.pid()));
        ProcessHandle.of(pids.get(a)).orElseThrow().destroy(); // SIGTERM
        awaitState(netlink, a, "unmapped");
        ProcessHandle.of(pids.get(b)).orElseThrow().destroyForcibly(); // SIGKILL
        awaitState(netlink, b, "detached");
        // the fake's state changes before the daemon hears the device is gone
        io.rbdnbd.engine.Await.until(() -> list(n).size() == 1);
        assertEquals(List.of(c), list(n).stream().map(DaemonGuardian.Device::device).toList());
        assertTrue(io(netlink, c), "the other device serves on");

        FakeAttach ioctl = new FakeAttach(false);
        ActorRef<DaemonGuardian.Command> i = daemon(ioctl, false);
        String e = map(i, "image = \"memory:1M\"").device();
        ProcessHandle.of(list(i).get(0).pid()).orElseThrow().destroyForcibly();
        awaitState(ioctl, e, "unmapped (forced)");
    }

    @Test
    void oneDeviceFailingLeavesTheOtherServing() {
        FakeAttach kernel = new FakeAttach(false);
        ActorRef<DaemonGuardian.Command> d = daemon(kernel, false);
        String a = map(d, "image = \"memory:1M\"").device();
        String b = map(d, "image = \"memory:2M\"").device();
        kernel.devices.get(a).tell(new FakeAttach.Die("connection lost"));
        for (int i = 0; i < 50 && list(d).size() > 1; i++) {
            testKit.system().scheduler(); // let the report arrive
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                throw new AssertionError(e);
            }
        }
        assertEquals(List.of(b), list(d).stream().map(DaemonGuardian.Device::device).toList());
        assertTrue(io(kernel, b), "the other device still serves");
        DaemonGuardian.MapReply missing = map(d, "image = \"file:" + dir.resolve("missing.img") + "\"");
        assertTrue(missing.error().contains("missing.img") && missing.error().contains("ENOENT"), missing.error());
        assertTrue(io(kernel, b), "a failed map touches no other device");
        assertTrue(unmap(d, b, true).error() == null);
        assertEquals("unmapped (forced)", kernel.lastCommand.get(b));
    }

    @Test
    void aBusyDeviceIsRefusedAndAnImageMappedTwiceIsUnmappedByDevice() {
        FakeAttach kernel = new FakeAttach(true);
        ActorRef<DaemonGuardian.Command> d = daemon(kernel, false);
        DaemonGuardian.MapReply a = map(d, "image = \"memory:1M\", device = /dev/nbd7");
        assertEquals("/dev/nbd7", a.device());
        DaemonGuardian.MapReply busy = map(d, "image = \"memory:2M\", device = /dev/nbd7");
        assertTrue(busy.error().contains("/dev/nbd7 is busy"), busy.error());
        String b = map(d, "image = \"memory:1M\"").device();
        assertTrue(unmap(d, "memory:1048576", false).error().contains("mapped more than once"));
        assertNull(unmap(d, b, false).error());
        assertNull(unmap(d, "memory:1048576", false).error());
    }

    @Test
    void detachIsForNetlinkDevicesOnly() {
        FakeAttach ioctl = new FakeAttach(false);
        ActorRef<DaemonGuardian.Command> d = daemon(ioctl, false);
        String a = map(d, "image = \"memory:1M\"").device();
        TestProbe<DaemonGuardian.Reply> p = testKit.createTestProbe();
        d.tell(new DaemonGuardian.Detach(a, -1, p.getRef()));
        assertTrue(p.expectMessageClass(DaemonGuardian.Reply.class).error().contains("needs netlink"));
        FakeAttach netlink = new FakeAttach(true);
        ActorRef<DaemonGuardian.Command> n = daemon(netlink, false);
        String b = map(n, "image = \"memory:1M\"").device();
        n.tell(new DaemonGuardian.Detach(b, -1, p.getRef()));
        assertNull(p.expectMessageClass(DaemonGuardian.Reply.class).error());
        assertEquals("detached", netlink.lastCommand.get(b));
    }

    @Test
    void stopAllStopsEveryDeviceThenTheDaemon() {
        FakeAttach kernel = new FakeAttach(true);
        ActorRef<DaemonGuardian.Command> d = daemon(kernel, false);
        String a = map(d, "image = \"memory:1M\"").device();
        String b = map(d, "image = \"memory:1M\"").device();
        TestProbe<Object> watcher = testKit.createTestProbe();
        d.tell(new DaemonGuardian.StopAll());
        watcher.expectTerminated(d, Duration.ofSeconds(10));
        assertEquals("detached", kernel.lastCommand.get(a));
        assertEquals("detached", kernel.lastCommand.get(b));
        assertEquals(1, exits.get());
    }

    @Test
    void theDaemonMapStartedExitsWithItsLastDevice() {
        FakeAttach kernel = new FakeAttach(true);
        ActorRef<DaemonGuardian.Command> d = daemon(kernel, true);
        String a = map(d, "image = \"memory:1M\"").device();
        TestProbe<Object> watcher = testKit.createTestProbe();
        watcher.expectNoMessage(Duration.ofMillis(600)); // past the linger: a device keeps it
        assertEquals(1, list(d).size());
        assertNull(unmap(d, a, false).error());
        watcher.expectTerminated(d, Duration.ofSeconds(5));
    }

    @Test
    void devicesAndTheDaemonAreMXBeansAndStatsPrintsTheSame() throws Exception {
        FakeAttach kernel = new FakeAttach(true);
        ActorRef<DaemonGuardian.Command> d = daemon(kernel, false);
        jmx.registerDaemon(new DaemonBean(d, testKit.system().scheduler(), defaults, Duration.ofSeconds(10)));
        io.rbdnbd.actors.jmx.DaemonMXBean bean = javax.management.JMX.newMXBeanProxy(mbeans,
                io.rbdnbd.actors.jmx.JmxRegistry.daemonName(), io.rbdnbd.actors.jmx.DaemonMXBean.class);
        String dev = bean.map("memory:1M", "read-only = false");
        assertEquals(List.of(dev), bean.getDevices());
        assertTrue(io(kernel, dev));
        javax.management.ObjectName name = io.rbdnbd.actors.jmx.JmxRegistry.deviceName(dev);
        assertEquals("memory:1M", mbeans.getAttribute(name, "Image"));
        assertEquals("mapped", mbeans.getAttribute(name, "State"));
        assertEquals(1L << 20, mbeans.getAttribute(name, "SizeBytes"));
        TestProbe<DaemonGuardian.StatsReply> p = testKit.createTestProbe();
        d.tell(new DaemonGuardian.Stats(dev, p.getRef()));
        String text = p.expectMessageClass(DaemonGuardian.StatsReply.class).text();
        assertTrue(text.contains(dev) && text.contains("memory:1M") && text.contains("mapped"), text);
        d.tell(new DaemonGuardian.Stats("/dev/nbd99", p.getRef()));
        assertTrue(p.expectMessageClass(DaemonGuardian.StatsReply.class).error().contains("not mapped"));
        try {
            bean.map("memory:1M", "devize = x");
            throw new AssertionError("a bad option was taken");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage().contains("devize"), expected.getMessage());
        }
        bean.unmap(dev, false);
        assertTrue(!mbeans.isRegistered(name), "an unmapped device's MXBean is gone");
        assertTrue(bean.getDevices().isEmpty());
    }

    @Test
    void controlSocketServesRequestsAndOnlyItsOwnerMayOpenIt() throws Exception {
        FakeAttach kernel = new FakeAttach(true);
        ActorRef<DaemonGuardian.Command> d = daemon(kernel, false);
        Path socket = dir.resolve("run/control.sock");
        try (ControlServer server = ControlServer.start(socket, ControlServer.daemonHandler(d,
                testKit.system().scheduler(), defaults, Duration.ofSeconds(10)))) {
            assertEquals("rw-------", java.nio.file.attribute.PosixFilePermissions.toString(
                    java.nio.file.Files.getPosixFilePermissions(socket)));
            assertEquals("rwx------", java.nio.file.attribute.PosixFilePermissions.toString(
                    java.nio.file.Files.getPosixFilePermissions(socket.getParent())));
            ControlProtocol.Answer mapped = ControlProtocol.call(socket, new ControlProtocol.MapRequest(
                    ConfigFactory.parseMap(Map.of("image", "memory:1M", "cookie", "k"))));
            String dev = assertInstanceOf(ControlProtocol.Mapped.class, mapped, mapped.toString()).device();
            ControlProtocol.MappedDevice row = assertInstanceOf(ControlProtocol.Listed.class,
                    ControlProtocol.call(socket, new ControlProtocol.ListRequest())).devices().get(0);
            assertEquals(dev, row.device());
            assertEquals("memory:1M", row.image(), "the image as it was given");
            assertEquals("k", row.cookie());
            assertEquals("mapped", row.state());
            ControlProtocol.Answer bad = ControlProtocol.call(socket, new ControlProtocol.MapRequest(
                    ConfigFactory.parseMap(Map.of("image", "p/i", "devize", "x"))));
            assertTrue(assertInstanceOf(ControlProtocol.Failed.class, bad).error().contains("devize"), bad.toString());
            assertInstanceOf(ControlProtocol.Done.class, ControlProtocol.call(socket, new ControlProtocol.UnmapRequest(dev, -1, false)));
            ControlProtocol.Answer again = ControlProtocol.call(socket, new ControlProtocol.UnmapRequest(dev, -1, false));
            assertTrue(assertInstanceOf(ControlProtocol.Failed.class, again).error().contains("not mapped"), again.toString());
            // a line that is no request of the protocol gets a failure, and the daemon carries on
            try (java.nio.channels.SocketChannel raw = java.nio.channels.SocketChannel.open(
                    java.net.UnixDomainSocketAddress.of(socket))) {
                raw.write(java.nio.ByteBuffer.wrap("{\"op\":\"frob\"}\n".getBytes(java.nio.charset.StandardCharsets.UTF_8)));
                String answer = new java.io.BufferedReader(new java.io.InputStreamReader(
                        java.nio.channels.Channels.newInputStream(raw), java.nio.charset.StandardCharsets.UTF_8)).readLine();
                assertTrue(assertInstanceOf(ControlProtocol.Failed.class, ControlProtocol.decodeAnswer(answer)).error()
                        .contains("unknown control request 'frob'"), answer);
            }
            assertInstanceOf(ControlProtocol.Listed.class, ControlProtocol.call(socket, new ControlProtocol.ListRequest()));
        }
        assertTrue(!java.nio.file.Files.exists(socket), "the socket file is removed on close");
        try {
            ControlProtocol.call(socket, new ControlProtocol.ListRequest());
            throw new AssertionError("a closed daemon answered");
        } catch (ControlProtocol.NoDaemonException expected) {
            // what map takes as "start a daemon"
        }
    }
}
