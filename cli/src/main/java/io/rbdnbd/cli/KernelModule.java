package io.rbdnbd.cli;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Loads the nbd kernel module for {@code map}, as Ceph's rbd-nbd does (with --nbds_max, --max_part). */
final class KernelModule {
    private KernelModule() {
    }

    /**
     * Loads nbd with the given parameters unless it is there already, in which case they cannot
     * apply and a warning says so (Ceph's words). A failed load is not an error here: the map then
     * fails with what the kernel side says (no /dev/nbdN).
     *
     * @param nbdsMax 0: the module's default
     * @param maxPart -1: the module's default
     */
    static void load(int nbdsMax, int maxPart, PrintStream err) {
        if (Files.exists(Path.of("/sys/module/nbd"))) {
            if (nbdsMax > 0 || maxPart >= 0) {
                err.println("rbd-nbd: ignoring kernel module parameter options: nbd module already loaded");
            }
            return;
        }
        List<String> cmd = new ArrayList<>(List.of("modprobe", "nbd"));
        if (nbdsMax > 0) {
            cmd.add("nbds_max=" + nbdsMax);
        }
        if (maxPart >= 0) {
            cmd.add("max_part=" + maxPart);
        }
        try {
            Process p = new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.DISCARD)
                    .redirectError(ProcessBuilder.Redirect.INHERIT).start();
            if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
                err.println("rbd-nbd: " + String.join(" ", cmd) + " failed");
            }
        } catch (IOException e) {
            err.println("rbd-nbd: cannot run " + String.join(" ", cmd) + ": " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
