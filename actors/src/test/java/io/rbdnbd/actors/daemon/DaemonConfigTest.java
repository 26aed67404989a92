package io.rbdnbd.actors.daemon;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigParseOptions;
import io.rbdnbd.engine.backend.ImageSpec;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A broken configuration stops the daemon with the file, the line, the key and what is wrong. */
class DaemonConfigTest {
    private static final Config reference = ConfigFactory.defaultReference();

    private static Config file(String text) {
        return ConfigFactory.parseString(text, ConfigParseOptions.defaults().setOriginDescription("/etc/rbd-nbd/rbd-nbd.conf"))
                .withFallback(reference).resolve();
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "rbdnbd.engine.iodeph = 8 | rbdnbd.engine.iodeph | unknown setting",
            "rbdnbd.engine.iodepth = 0 | rbdnbd.engine.iodepth | must be 1..65536",
            "rbdnbd.engine.iodepth = lots | iodepth | NUMBER",
            "rbdnbd.daemon.map-timeout = 0 s | map-timeout | must be positive",
            "rbdnbd.reopen.random-factor = 2 | rbdnbd.reopen.random-factor | must be 0..1",
            "rbdnbd.jmx.remote.port = 9010 | rbdnbd.jmx.remote.password-file | ",
            "rbdnbd.kernel.netlink = maybe | netlink | BOOLEAN",
            "rbdnbd.daemon.devices = [ { device = /dev/nbd0 } ] | image | ",
            "rbdnbd.daemon.devices = [ { image = a/b/c/d } ] | image | too many '/'",
            "rbdnbd.daemon.devices = [ { image = img, devize = /dev/nbd0 } ] | devize | unknown device setting",
            "rbdnbd.daemon.devices = [ { image = img, device = /dev/sda } ] | device | /dev/nbdN",
            "rbdnbd.daemon.devices = [ { image = \"file:/x\", exclusive = true } ] | image | RBD images only",
            "rbdnbd.daemon.devices = [ { image = \"memory:1M\", ceph { id = x } } ] | ceph | RBD images only",
            "rbdnbd.daemon.devices = [ { image = img, io-timeout = -1 } ] | io-timeout | whole seconds",
            "rbdnbd.daemon.devices = [ { image = img, attach = true } ] | attach | attach needs",
    })
    void aBrokenSettingIsNamedWithItsFileAndLine(String text, String key, String what) {
        Exception e = assertThrows(Exception.class, () -> ConfigCheck.check(file(text), reference));
        String m = e.getMessage();
        assertTrue(m.contains("rbd-nbd.conf: 1") && m.contains(key.trim()) && m.contains(what == null ? "" : what.trim()), m);
    }

    @Test
    void devicesFromTheConfigurationAreRead() {
        Config c = file("""
                rbdnbd.daemon.devices = [
                  { image = "rbd/ns/vm@snap", device = /dev/nbd4, io-timeout = 0, ceph { id = nbd, options { rbd_cache = "true" } } }
                  { image = "file:/var/lib/d.img", read-only = true, size = 1G }
                ]
                rbdnbd.ceph.options.rados_osd_op_timeout = 30
                """);
        ConfigCheck.check(c, reference);
        DaemonSettings s = DaemonSettings.from(c);
        assertEquals(2, s.devices().size());
        DeviceRequest vm = s.devices().get(0);
        assertEquals(new ImageSpec.Rbd("rbd", "ns", "vm", "snap", -1, false, null), vm.image());
        assertEquals("/dev/nbd4", vm.device());
        assertEquals(0, vm.ioTimeoutSeconds());
        assertEquals(30, vm.reattachTimeoutSeconds());
        Config device = vm.deviceConfig(c);
        assertEquals("nbd", device.getString("rbdnbd.ceph.id"));
        assertEquals("true", device.getString("rbdnbd.ceph.options.rbd_cache"));
        assertEquals("30", device.getString("rbdnbd.ceph.options.rados_osd_op_timeout"), "the daemon's options stay");
        DeviceRequest file = s.devices().get(1);
        assertTrue(file.readOnly() && file.trim());
        assertEquals(1L << 30, file.createSize());
        assertTrue(!file.quiesce());
    }
}
