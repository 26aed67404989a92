package io.rbdnbd.actors.jmx;

import com.typesafe.config.ConfigException;
import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.stream.IoStats;
import io.rbdnbd.nativeio.Errno;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.management.JMX;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.openmbean.CompositeData;
import javax.management.openmbean.TabularData;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ConnectException;
import java.net.NetworkInterface;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The remote connector for real: a JMXConnector over RMI on 127.0.0.1, password-authenticated,
 * reading a registered device's attributes from the platform MBeanServer.
 */
class JmxRemoteTest {
    private static final String DEVICE = "/dev/nbd42"; // a name no other test registers

    @TempDir
    Path dir;

    private final JmxRegistry registry = new JmxRegistry();
    private DeviceView view;
    private ObjectName name;

    @BeforeEach
    void registerADeviceWithSomeRequests() {
        AtomicLong clock = new AtomicLong(System.nanoTime());
        IoStats stats = new IoStats(clock::get);
        for (int i = 0; i < 10; i++) {
            long start = stats.started();
            clock.addAndGet(250_000); // 250 µs
            stats.completed(Nbd.CMD_READ, 4096, 0, start);
        }
        long start = stats.started();
        stats.completed(Nbd.CMD_WRITE, 4096, Errno.ETIMEDOUT, start);
        view = new DeviceView(DeviceInfo.of(() -> "rbd/vm1", () -> DEVICE, () -> DeviceState.MAPPED,
                () -> 1L << 30, () -> 2, () -> "lost"), stats);
        name = registry.registerDevice(DEVICE, view);
    }

    @AfterEach
    void unregister() {
        registry.unregisterDevice(DEVICE);
    }

    private Path file(String name, String content, String mode) throws IOException {
        Path p = dir.resolve(name);
        Files.writeString(p, content);
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString(mode));
        return p;
    }

    /** This machine's addresses other than loopback (none in a network-less sandbox). */
    private static List<InetAddress> otherAddresses() throws IOException {
        return NetworkInterface.networkInterfaces().filter(i -> {
            try {
                return i.isUp() && !i.isLoopback();
            } catch (SocketException e) {
                return false;
            }
        }).flatMap(NetworkInterface::inetAddresses).filter(a -> !a.isLinkLocalAddress()).toList();
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    private JmxSettings remote(int port, Path passwords, Path access) {
        return new JmxSettings(true, port, "127.0.0.1", passwords.toString(), access == null ? "" : access.toString());
    }

    private static JMXConnector connect(JMXServiceURL url, String user, String password) throws IOException {
        Map<String, Object> env = new HashMap<>();
        if (user != null) {
            env.put(JMXConnector.CREDENTIALS, new String[] {user, password});
        }
        return JMXConnectorFactory.connect(url, env);
    }

    @Test
    void aRemoteClientReadsTheDevicesAttributes() throws Exception {
        Path passwords = file("jmx.password", "admin s3cret\n", "rw-------");
        int port = freePort();
        try (JmxRemote remote = JmxRemote.start(remote(port, passwords, null))) {
            JMXServiceURL url = remote.address().orElseThrow();
            assertEquals("service:jmx:rmi://127.0.0.1:" + port + "/jndi/rmi://127.0.0.1:" + port + "/jmxrmi",
                    url.toString());
            // as jconsole's HOST:PORT does it: the registry's address only
            JMXServiceURL shortUrl = new JMXServiceURL("service:jmx:rmi:///jndi/rmi://127.0.0.1:" + port + "/jmxrmi");
            try (JMXConnector c = connect(shortUrl, "admin", "s3cret")) {
                MBeanServerConnection mbsc = c.getMBeanServerConnection();
                assertEquals(DEVICE, mbsc.getAttribute(name, "Device"));
                assertEquals("mapped", mbsc.getAttribute(name, "State"));
                assertEquals(1L << 30, mbsc.getAttribute(name, "SizeBytes"));
                assertEquals(2L, mbsc.getAttribute(name, "SupervisorRestarts"));
                TabularData requests = (TabularData) mbsc.getAttribute(name, "Requests");
                CompositeData read = requests.get(new Object[] {"read"});
                assertEquals(10L, read.get("value"));

                DeviceMXBean proxy = JMX.newMXBeanProxy(mbsc, name, DeviceMXBean.class);
                assertEquals(10L, proxy.getRequests().get("read"));
                assertEquals(40960L, proxy.getBytes().get("read"));
                assertEquals(Map.of("ETIMEDOUT", 1L), proxy.getErrorsByErrno());
                assertEquals(1L, proxy.getErrors().get("write"));
                assertEquals(0L, proxy.getInFlight());
                long p50 = proxy.getLatencyP50Micros();
                assertTrue(Math.abs(p50 - 250) <= 250 / 32, "p50 " + p50);
                assertEquals(StatsText.format(view), StatsText.format(proxy), "the same text, local or remote");
            }
            for (InetAddress other : otherAddresses()) {
                try (Socket s = new Socket()) {
                    assertThrows(ConnectException.class, () -> s.connect(new InetSocketAddress(other, port), 2000),
                            "listening on " + other);
                }
            }
        }
        // closed: nothing listens there any more. RMI closes its listening socket once the last
        // object exported on it is gone, which may lag the unexport a little (seen once in CI)
        long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(10);
        while (true) {
            try {
                new Socket("127.0.0.1", port).close();
            } catch (ConnectException closed) {
                break;
            }
            assertTrue(System.nanoTime() < deadline, "port " + port + " still accepts 10 s after close");
            Thread.sleep(100);
        }
    }

    @Test
    void wrongOrMissingCredentialsAreRefused() throws Exception {
        Path passwords = file("jmx.password", "admin s3cret\n", "rw-------");
        try (JmxRemote remote = JmxRemote.start(remote(freePort(), passwords, null))) {
            JMXServiceURL url = remote.address().orElseThrow();
            assertThrows(SecurityException.class, () -> connect(url, "admin", "guess").close());
            assertThrows(SecurityException.class, () -> connect(url, "nobody", "s3cret").close());
            assertThrows(SecurityException.class, () -> connect(url, null, null).close());
        }
    }

    @Test
    void aReadOnlyUserReadsButCannotChangeAnything() throws Exception {
        Path passwords = file("jmx.password", "admin s3cret\nwatcher peek\n", "rw-------");
        Path access = file("jmx.access", "admin readwrite\nwatcher readonly\n", "rw-r--r--");
        try (JmxRemote remote = JmxRemote.start(remote(freePort(), passwords, access));
             JMXConnector c = connect(remote.address().orElseThrow(), "watcher", "peek")) {
            MBeanServerConnection mbsc = c.getMBeanServerConnection();
            assertEquals("rbd/vm1", mbsc.getAttribute(name, "Image"));
            assertThrows(SecurityException.class, () -> mbsc.unregisterMBean(name));
            assertTrue(registry.isRegistered(name));
        }
    }

    @Test
    void aPasswordFileOthersMayReadIsRefused() throws Exception {
        Path passwords = file("jmx.password", "admin s3cret\n", "rw-r--r--");
        ConfigException.BadValue e = assertThrows(ConfigException.BadValue.class,
                () -> JmxRemote.start(remote(freePort(), passwords, null)));
        assertTrue(e.getMessage().contains("rbdnbd.jmx.remote.password-file"), e.getMessage());
        assertTrue(e.getMessage().contains("chmod 600"), e.getMessage());
    }

    @Test
    void aMissingPasswordFileIsRefused() {
        ConfigException.BadValue e = assertThrows(ConfigException.BadValue.class,
                () -> JmxRemote.start(remote(9, dir.resolve("absent"), null)));
        assertTrue(e.getMessage().contains("rbdnbd.jmx.remote.password-file"), e.getMessage());
    }

    @Test
    void aPortWithoutAPasswordFileIsAConfigError() {
        ConfigException.BadValue e = assertThrows(ConfigException.BadValue.class,
                () -> new JmxSettings(true, 9010, "127.0.0.1", "", ""));
        assertTrue(e.getMessage().contains("rbdnbd.jmx.remote.password-file"), e.getMessage());
    }

    @Test
    void noPortStartsNothing() throws Exception {
        try (JmxRemote remote = JmxRemote.start(new JmxSettings(true, 0, "127.0.0.1", "", ""))) {
            assertTrue(remote.address().isEmpty());
        }
    }
}
