package io.rbdnbd.it;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** scripts/install.sh: rbd-nbd runs outside the build tree, also through a link (as `rbd device -t nbd` finds it). */
class InstallTest {
    private static final Duration QUICK = Duration.ofSeconds(120);

    @TempDir
    Path dir;

    @Test
    void theInstalledLauncherRunsOutsideTheTree() throws Exception {
        Path prefix = dir.resolve("prefix");
        Commands.Result install = Commands.run(QUICK, null, Map.of(), "bash",
                ServerProcess.home().resolve("scripts/install.sh").toString(), prefix.toString());
        assertEquals(0, install.exitCode(), install.describe());
        assertTrue(install.stdout().contains("installed rbd-nbd (rbdnbd version "), install.describe());

        Path link = Files.createDirectories(dir.resolve("rbdbin")).resolve("rbd-nbd");
        Files.createSymbolicLink(link, prefix.resolve("bin/rbd-nbd"));
        for (Path launcher : new Path[] {prefix.resolve("bin/rbd-nbd"), link}) {
            Commands.Result v = Commands.run(QUICK, dir, Map.of(), launcher.toString(), "--version");
            assertEquals(0, v.exitCode(), v.describe());
            assertTrue(v.stdout().startsWith("rbdnbd version "), v.describe());
            Commands.Result list = Commands.run(QUICK, dir, Map.of("RBDNBD_JAVA_OPTS",
                    "-Drbdnbd.daemon.run-directory=" + dir.resolve("run")), launcher.toString(), "list-mapped");
            assertEquals(0, list.exitCode(), list.describe());
            assertEquals("", list.stdout(), "no daemon: nothing mapped");
        }
        String unit = Files.readString(prefix.resolve("lib/systemd/system/rbd-nbd.service"));
        assertTrue(unit.contains("\nExecStart=" + prefix.resolve("bin/rbd-nbd") + " daemon\n"), unit);
        assertTrue(Files.isRegularFile(prefix.resolve("share/doc/rbdnbd/rbd-nbd.conf.example")));
    }
}
