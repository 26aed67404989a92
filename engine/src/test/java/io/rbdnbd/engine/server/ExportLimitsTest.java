package io.rbdnbd.engine.server;

import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import org.junit.jupiter.api.Test;

import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ExportLimitsTest {

    @Test
    void defaults() {
        ExportLimits l = ExportLimits.from(ConfigFactory.load());
        assertEquals(new ExportLimits(Duration.ofSeconds(10), 256, 128, Duration.ZERO), l);
    }

    @Test
    void badValuesNameTheKey() {
        for (String bad : new String[] {"handshake-timeout = 0 s", "max-connections = 0",
                "max-connections-per-export = -1", "idle-timeout = -1 s"}) {
            ConfigException.BadValue e = assertThrows(ConfigException.BadValue.class, () -> ExportLimits.from(
                    ConfigFactory.parseString("rbdnbd.engine.export." + bad).withFallback(ConfigFactory.load())));
            assertTrue(e.getMessage().contains("rbdnbd.engine.export." + bad.substring(0, bad.indexOf(' '))),
                    e.getMessage());
        }
    }
}
