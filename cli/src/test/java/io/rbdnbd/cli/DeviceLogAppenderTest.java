package io.rbdnbd.cli;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.spi.LoggingEvent;
import io.rbdnbd.actors.daemon.DeviceLogs;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

class DeviceLogAppenderTest {
    @TempDir
    Path dir;

    private static LoggingEvent event(String message, Map<String, String> mdc) {
        LoggerContext ctx = new LoggerContext();
        LoggingEvent e = new LoggingEvent("x", ctx.getLogger("io.rbdnbd.actors.KernelAttach"), Level.INFO, message, null, null);
        e.setMDCPropertyMap(mdc);
        return e;
    }

    @Test
    void aDevicesLinesGoToItsFileAndNoOthers() throws Exception {
        Path file = dir.resolve("rbd-nbd-vol1.log");
        String supervisor = "pekko://rbdnbd/user/device-3";
        DeviceLogs.add(supervisor, file);
        try {
            DeviceLogAppender appender = new DeviceLogAppender();
            appender.setContext(new LoggerContext());
            appender.start();
            appender.doAppend(event("/dev/nbd0 ready", Map.of(DeviceLogs.SOURCE, supervisor + "/kernel-attach")));
            appender.doAppend(event("another device", Map.of(DeviceLogs.SOURCE, "pekko://rbdnbd/user/device-30")));
            appender.doAppend(event("the daemon's own line", Map.of(DeviceLogs.SOURCE, "pekko://rbdnbd/user")));
            appender.doAppend(event("rbd/img mapped to /dev/nbd0", Map.of(DeviceLogs.SOURCE, "pekko://rbdnbd/user",
                    DeviceLogs.DEVICE, supervisor)));
            appender.doAppend(event("no MDC", Map.of()));
            var lines = Files.readAllLines(file);
            assertEquals(2, lines.size(), String.join("\n", lines));
            assertEquals(true, lines.get(0).endsWith("INFO  KernelAttach - /dev/nbd0 ready"), lines.get(0));
            assertEquals(true, lines.get(1).endsWith("rbd/img mapped to /dev/nbd0"), lines.get(1));
        } finally {
            DeviceLogs.remove(supervisor);
        }
        assertFalse(DeviceLogs.fileFor(supervisor).isPresent(), "an unmapped device's file gets nothing more");
    }
}
