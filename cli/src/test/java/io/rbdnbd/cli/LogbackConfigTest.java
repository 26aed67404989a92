package io.rbdnbd.cli;

import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.joran.JoranConfigurator;
import ch.qos.logback.core.status.Status;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/** The shipped logback.xml loads without a complaint: a broken one silences every process. */
class LogbackConfigTest {
    @Test
    void theShippedConfigurationLoads() throws Exception {
        LoggerContext ctx = new LoggerContext();
        JoranConfigurator c = new JoranConfigurator();
        c.setContext(ctx);
        java.net.URL shipped = getClass().getClassLoader().getResource("logback.xml");
        assertNotNull(shipped, "logback.xml of the conf module on the class path");
        c.doConfigure(shipped);
        java.util.List<String> problems = ctx.getStatusManager().getCopyOfStatusList().stream()
                .filter(s -> s.getEffectiveLevel() >= Status.WARN).map(Status::toString).toList();
        assertEquals(java.util.List.of(), problems);
        assertNotNull(ctx.getLogger("ROOT").getAppender("DEVICE"), "the device log appender is configured");
        ctx.stop();
    }
}
