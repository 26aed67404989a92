package io.rbdnbd.actors.jmx;

import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class JmxSettingsTest {
    private static JmxSettings parse(String overrides) {
        return JmxSettings.from(ConfigFactory.parseString(overrides).withFallback(ConfigFactory.defaultReference()));
    }

    @Test
    void defaultsRegisterLocallyAndOpenNoPort() {
        JmxSettings s = parse("");
        assertEquals(new JmxSettings(true, 0, "127.0.0.1", "", ""), s);
        assertFalse(s.remote());
    }

    @Test
    void aPortWithAPasswordFileIsRemote() {
        JmxSettings s = parse("rbdnbd.jmx.remote { port = 9010, password-file = /etc/rbdnbd/jmx.password }");
        assertTrue(s.remote());
        assertEquals("/etc/rbdnbd/jmx.password", s.passwordFile());
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
            "rbdnbd.jmx.remote.port = 9010 | rbdnbd.jmx.remote.password-file | set rbdnbd.jmx.remote.password-file",
            "rbdnbd.jmx { enabled = off, remote { port = 9010, password-file = /p } } | rbdnbd.jmx.enabled | set enabled = on",
            "rbdnbd.jmx.remote.port = 70000 | rbdnbd.jmx.remote.port | must be 0",
            "rbdnbd.jmx.remote { port = 9010, password-file = /p, host = \"\" } | rbdnbd.jmx.remote.host | 127.0.0.1",
    })
    void badSettingsNameTheirPathAndSayWhatToSet(String overrides, String path, String advice) {
        ConfigException.BadValue e = assertThrows(ConfigException.BadValue.class, () -> parse(overrides));
        assertTrue(e.getMessage().contains(path), e.getMessage());
        assertTrue(e.getMessage().contains(advice), e.getMessage());
    }
}
