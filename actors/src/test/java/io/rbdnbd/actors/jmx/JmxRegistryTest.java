package io.rbdnbd.actors.jmx;

import io.rbdnbd.engine.stream.IoStats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import javax.management.JMX;
import javax.management.MBeanServer;
import javax.management.MBeanServerFactory;
import javax.management.ObjectName;
import java.lang.management.ManagementFactory;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class JmxRegistryTest {
    private final MBeanServer server = MBeanServerFactory.newMBeanServer();
    private final JmxRegistry registry = new JmxRegistry(server);

    static DeviceView view(String device) {
        return new DeviceView(DeviceInfo.of(() -> "rbd/vm", () -> device, () -> DeviceState.MAPPED, () -> 4096,
                () -> 0, () -> ""), new IoStats());
    }

    @ParameterizedTest(name = "{0} is {1}")
    @CsvSource(delimiter = '|', value = {
            "/dev/nbd3 | io.rbdnbd:type=Device,name=nbd3",
            "nbd15 | io.rbdnbd:type=Device,name=nbd15",
            "/dev/odd,name=x | io.rbdnbd:type=Device,name=\"odd,name=x\"",
            "/dev/q\"uote*? | io.rbdnbd:type=Device,name=\"q\\\"uote\\*\\?\"",
    })
    void deviceNames(String device, String name) throws Exception {
        ObjectName n = JmxRegistry.deviceName(device);
        assertEquals(name, n.toString());
        assertEquals("Device", n.getKeyProperty("type"));
        String value = n.getKeyProperty("name");
        String bare = device.startsWith("/dev/") ? device.substring(5) : device;
        assertEquals(bare, value.startsWith("\"") ? ObjectName.unquote(value) : value);
    }

    @Test
    void aDeviceWithoutANameIsRefused() {
        assertThrows(IllegalArgumentException.class, () -> JmxRegistry.deviceName("/dev/"));
    }

    @Test
    void registeredDevicesReadAsMxBeans() {
        ObjectName n = registry.registerDevice("/dev/nbd3", view("/dev/nbd3"));
        assertEquals("io.rbdnbd:type=Device,name=nbd3", n.toString());
        assertTrue(JMX.isMXBeanInterface(DeviceMXBean.class));
        DeviceMXBean proxy = JMX.newMXBeanProxy(server, n, DeviceMXBean.class);
        assertEquals("/dev/nbd3", proxy.getDevice());
        assertEquals(IoStats.commandNames().size(), proxy.getRequests().size());
    }

    @Test
    void registeringAgainReplacesAndUnregisteringTwiceDoesNothing() {
        registry.registerDevice("/dev/nbd3", view("/dev/nbd3"));
        DeviceView second = view("/dev/nbd3-again");
        ObjectName n = registry.registerDevice("/dev/nbd3", second);
        assertEquals("/dev/nbd3-again", JMX.newMXBeanProxy(server, n, DeviceMXBean.class).getDevice());
        assertTrue(registry.unregisterDevice("/dev/nbd3"));
        assertFalse(registry.unregisterDevice("/dev/nbd3"));
        assertFalse(registry.unregister(JmxRegistry.daemonName()));
        assertFalse(registry.isRegistered(n));
    }

    @Test
    void theDaemonIsOneName() throws Exception {
        DaemonMXBean daemon = new DaemonMXBean() {
            @Override
            public List<String> getDevices() {
                return List.of("/dev/nbd0", "/dev/nbd3");
            }

            @Override
            public String map(String image, String options) {
                return "/dev/nbd4";
            }

            @Override
            public void unmap(String deviceOrImage, boolean force) {
                throw new IllegalStateException(deviceOrImage + " is busy");
            }

            @Override
            public void detach(String deviceOrImage) {
            }
        };
        ObjectName n = registry.registerDaemon(daemon);
        assertEquals(new ObjectName("io.rbdnbd:type=Daemon"), n);
        DaemonMXBean proxy = JMX.newMXBeanProxy(server, n, DaemonMXBean.class);
        assertEquals(List.of("/dev/nbd0", "/dev/nbd3"), proxy.getDevices());
        assertEquals("/dev/nbd4", proxy.map("rbd/vm", "--read-only"));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> proxy.unmap("/dev/nbd0", false));
        assertEquals("/dev/nbd0 is busy", e.getMessage());
        assertTrue(registry.unregister(n));
    }

    @Test
    void aDisabledRegistryRegistersNothing() {
        JmxRegistry off = JmxRegistry.from(new JmxSettings(false, 0, "127.0.0.1", "", ""));
        ObjectName n = off.registerDevice("/dev/nbd9", view("/dev/nbd9"));
        assertFalse(off.isRegistered(n));
        assertFalse(ManagementFactory.getPlatformMBeanServer().isRegistered(n));
        assertFalse(off.unregister(n));
    }
}
