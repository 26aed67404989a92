package io.rbdnbd.cli;

import ch.qos.logback.classic.PatternLayout;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.AppenderBase;
import io.rbdnbd.actors.daemon.DeviceLogs;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import java.util.Optional;

/**
 * Appends each line about a device that has a log file of its own ({@link DeviceLogs}) to that
 * file, opened and closed per line: a device logs little (mapping, errors, reopens, unmap), and
 * holding nothing open means a file removed after unmap (ceph-csi does) costs nothing.
 */
public final class DeviceLogAppender extends AppenderBase<ILoggingEvent> {
    private final PatternLayout layout = new PatternLayout();
    private String pattern = "%d{yyyy-MM-dd'T'HH:mm:ss.SSS} %-5level %logger{0} - %msg%n";

    public void setPattern(String pattern) {
        this.pattern = pattern;
    }

    @Override
    public void start() {
        layout.setContext(getContext());
        layout.setPattern(pattern);
        layout.start();
        super.start();
    }

    @Override
    protected void append(ILoggingEvent event) {
        Map<String, String> mdc = event.getMDCPropertyMap();
        Optional<Path> file = DeviceLogs.fileFor(mdc.getOrDefault(DeviceLogs.DEVICE, mdc.get(DeviceLogs.SOURCE)));
        if (file.isEmpty()) {
            return;
        }
        try {
            Files.writeString(file.get(), layout.doLayout(event), StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                    StandardOpenOption.APPEND, StandardOpenOption.WRITE);
        } catch (IOException e) {
            addWarn("cannot append to the device log " + file.get() + ": " + e.getMessage());
        }
    }
}
