package io.rbdnbd.engine.server;

import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import io.rbdnbd.engine.stream.EngineSettings;
import org.junit.jupiter.api.Test;

import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ExportLimitsTest {

    @Test
    void defaults() {
        ExportLimits l = ExportLimits.from(ConfigFactory.load());
        assertEquals(new ExportLimits(Duration.ofSeconds(10), 256, 128, Duration.ZERO), l);
        assertEquals(128L << 20, l.directBytes(EngineSettings.with()), "2 x 256 KiB x 256 connections");
    }

    @Test
    void directMemoryMustFitTheJvm() {
        ExportLimits l = ExportLimits.from(ConfigFactory.load());
        assertDoesNotThrow(() -> l.requireFits(EngineSettings.with(), 256L << 20));
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> l.requireFits(EngineSettings.with(), 64L << 20));
        assertTrue(e.getMessage().contains("max-connections (256)") && e.getMessage().contains("(64 MiB)"),
                e.getMessage());
        assertTrue(ExportLimits.maxDirectMemory() > 0);
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
