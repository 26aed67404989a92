package io.rbdnbd.it.uml;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

/**
 * Runs commands inside a throwaway User-Mode Linux guest with the kernel NBD driver loaded, through
 * {@code it-tests/uml/uml-run.sh} (read its header for what the guest looks like). The guest's root
 * filesystem is the host's own {@code /}: commands, the JDK and built classes are at the same paths,
 * and files the guest writes outside {@code /run}, {@code /dev}, {@code /proc}, {@code /sys} land on
 * the host. Scratch disk images belong in the guest's private {@code /run} (a tmpfs in guest RAM,
 * half of it at most).
 *
 * <pre>{@code
 * @BeforeAll static void uml() { UmlGuest.assumeAvailable(); }   // fail if not installed, skip if impossible
 *
 * @Test void attach() {
 *     UmlGuest.Result r = UmlGuest.run(Duration.ofMinutes(3), workDir, Map.of("IMAGE_SIZE", "1G"),
 *             "bash", UmlGuest.guestScript("my-attach-test.sh").toString());
 *     r.assertSucceeded();                  // guest output, harness log and guest dmesg on failure
 *     assertTrue(r.output().contains("PASS"), r::describe);
 * }
 * }</pre>
 *
 * A JVM inside the guest must be started small: see {@link #GUEST_JVM_OPTIONS} and {@link #guestJava}.
 */
public final class UmlGuest {
    /**
     * How the kernel gets here. The kernel itself is uml-run.sh's choice (the one install-deps found to
     * boot on this host, see {@code it-tests/uml/uml-kernel.sh}) unless -Drbdnbd.uml.kernel names one.
     */
    public static final String INSTALL_HINT =
            "run scripts/install-deps.sh test (it installs the Debian packages user-mode-linux and kmod, and"
                    + " where Debian 12's kernel cannot run on this CPU fetches Debian unstable's)";
    /** Guest RAM unless a test asks for more. It is a sparse file: only what the guest touches costs. */
    public static final String DEFAULT_MEMORY = "1G";

    /**
     * JVM options for a JVM inside the guest. Every first touch of a guest page is a fault the UML
     * kernel handles in user space, and every syscall is a ptrace round trip, so a JVM sized for the
     * host (heap = 1/4 of RAM, pre-touched, parallel GC threads) starts slowly and wastes guest RAM.
     * Keep heaps small, direct memory bounded, and no hsperfdata: the guest's /tmp is the host's
     * /tmp, where guest and host pids would collide in /tmp/hsperfdata_USER.
     */
    public static final List<String> GUEST_JVM_OPTIONS = List.of(
            "-Xms16m", "-Xmx64m", "-XX:MaxDirectMemorySize=64m", "-XX:+UseSerialGC", "-XX:-UsePerfData");

    /** How long the availability probe (boot, load nbd, run {@code true}) may take. */
    private static final Duration PROBE_TIMEOUT = Duration.ofSeconds(120);
    /** Extra wait beyond the harness' own timeout before this side kills it (it needs a moment to clean up). */
    private static final Duration KILL_GRACE = Duration.ofSeconds(30);
    private static final int QUOTE_CHARS = 8000;
    /** uml-run.sh's last stderr line: "uml-run: status=S exit=N kernel_ms=N boot_ms=N cmd_ms=N total_ms=N". */
    private static final Pattern SUMMARY = Pattern.compile("^uml-run: (status=\\S+( \\w+=\\S+)*)\\s*$");

    private static Availability cached;

    private UmlGuest() {
    }

    /** What {@code uml-run.sh} reported about a run (its last stderr line). */
    public enum Status {
        /** The command ran; {@link Result#exitCode()} is its exit status. */
        OK,
        TIMEOUT,
        /** The guest ended without reporting a status (crash, panic, OOM of the whole guest). */
        GUEST_DIED,
        /** The kernel is too old for this CPU (its XSAVE area, AMX): a newer UML kernel runs here. */
        KERNEL_INCOMPATIBLE,
        /** The guest booted but its setup failed (nbd would not load, work directory unusable). */
        SETUP_FAILED,
        /** This host cannot run UML at all (ptrace forbidden, no usable tmpfs). */
        UNSUPPORTED_HOST,
        NOT_INSTALLED,
        USAGE,
        INTERRUPTED,
        /** No summary line: the harness itself failed. */
        UNKNOWN;

        static Status parse(String s) {
            return switch (s) {
                case "ok" -> OK;
                case "timeout" -> TIMEOUT;
                case "guest-died" -> GUEST_DIED;
                case "kernel-incompatible" -> KERNEL_INCOMPATIBLE;
                case "setup-failed" -> SETUP_FAILED;
                case "unsupported-host" -> UNSUPPORTED_HOST;
                case "not-installed" -> NOT_INSTALLED;
                case "usage" -> USAGE;
                case "interrupted" -> INTERRUPTED;
                default -> UNKNOWN;
            };
        }
    }

    /**
     * One guest run. {@code output} is the command's stdout and stderr, merged; {@code harnessLog} is
     * what uml-run.sh said (diagnostics, guest kernel log on failure, the summary line). Durations are
     * null when unknown: {@code bootToCommand} from starting the kernel to the command's start (boot,
     * mounts, modprobe nbd), of which {@code kernelBoot} until the guest's init started, {@code commandTime}
     * the command alone, {@code total} the whole run as seen from this JVM; {@code kernel} the UML kernel
     * booted, as "PATH (VERSION)", null when unknown.
     */
    public record Result(List<String> command, Status status, int exitCode, String output, String harnessLog,
                         Duration kernelBoot, Duration bootToCommand, Duration commandTime, Duration total,
                         String kernel) {
        /** The command ran in the guest and exited 0. */
        public boolean succeeded() {
            return status == Status.OK && exitCode == 0;
        }

        /** Fails the test with everything known about the run unless the command ran and exited 0. */
        public Result assertSucceeded() {
            if (!succeeded()) {
                Assertions.fail(describe());
            }
            return this;
        }

        public String timings() {
            return "boot-to-command " + ms(bootToCommand) + " (kernel " + ms(kernelBoot) + "), command "
                    + ms(commandTime) + ", total " + ms(total) + (kernel == null ? "" : ", kernel " + kernel);
        }

        public String describe() {
            String what = status == Status.OK ? "exited " + exitCode : "did not complete: " + status;
            return "UML guest `" + String.join(" ", command) + "` " + what + " (" + timings() + ")\n"
                    + "--- guest output ---\n" + quote(output) + "\n--- uml-run.sh ---\n" + quote(harnessLog);
        }

        private static String ms(Duration d) {
            return d == null ? "?" : d.toMillis() + " ms";
        }
    }

    /** Whether the real guest can exist on this machine, and why not. */
    public record Availability(Kind kind, String reason) {
        public enum Kind {
            AVAILABLE,
            /** linux.uml, its modules or modprobe are missing: the project installs them, so tests fail. */
            NOT_INSTALLED,
            /** The kernel cannot run on this CPU; install-deps provides one that does, so tests fail. */
            KERNEL_INCOMPATIBLE,
            /** Installed, but this host cannot run UML (container policy etc.): tests are skipped. */
            UNSUPPORTED_HOST,
            /** Installed and the host looked fine, but the guest did not work: a real failure. */
            BROKEN
        }
    }

    /**
     * Makes the calling test (or class, from {@code @BeforeAll}) fail when UML is not installed or does
     * not work, and skip, with the reason, when this host cannot run UML at all.
     */
    public static void assumeAvailable() {
        assumeAvailable(check());
    }

    static void assumeAvailable(Availability a) {
        switch (a.kind()) {
            case AVAILABLE -> {
            }
            case UNSUPPORTED_HOST -> Assumptions.abort(
                    "Skipped: this machine cannot run User-Mode Linux, so no kernel NBD tests here: " + a.reason());
            case NOT_INSTALLED -> Assertions.fail(
                    "User-Mode Linux is not installed: " + a.reason() + "\nFix: " + INSTALL_HINT);
            case KERNEL_INCOMPATIBLE -> Assertions.fail(
                    "This UML kernel cannot run on this CPU: " + a.reason() + "\nFix: " + INSTALL_HINT);
            case BROKEN -> Assertions.fail("User-Mode Linux is installed but the guest does not work:\n" + a.reason());
        }
    }

    /** Boots a guest once per JVM (about 2-4 s) to find out what {@link #assumeAvailable()} reports. */
    public static synchronized Availability check() {
        if (cached == null) {
            cached = probe(kernelOverride());
            System.out.println("[uml] availability probe: " + cached.kind() + ": " + cached.reason());
        }
        return cached;
    }

    /**
     * Uncached probe; {@code harnessEnv} may name the kernel (UML_RUN_KERNEL, UML_RUN_MODULES), else
     * uml-run.sh boots the one chosen for this host (tests of this class use fakes).
     */
    static Availability probe(Map<String, String> harnessEnv) {
        Result r = invoke(harnessEnv, List.of("-m", "256M"), PROBE_TIMEOUT, Path.of("/"), Map.of(), List.of("true"),
                false);
        return switch (r.status()) {
            case OK -> r.exitCode() == 0
                    ? new Availability(Availability.Kind.AVAILABLE, "booted in " + r.timings())
                    : new Availability(Availability.Kind.BROKEN, r.describe());
            case NOT_INSTALLED -> new Availability(Availability.Kind.NOT_INSTALLED, lastHarnessMessage(r));
            case KERNEL_INCOMPATIBLE -> new Availability(Availability.Kind.KERNEL_INCOMPATIBLE,
                    reasonLine(r, "kernel-incompatible"));
            case UNSUPPORTED_HOST -> new Availability(Availability.Kind.UNSUPPORTED_HOST,
                    reasonLine(r, "unsupported-host"));
            default -> new Availability(Availability.Kind.BROKEN, r.describe());
        };
    }

    /** Runs {@code command} in a fresh guest with {@link #DEFAULT_MEMORY} of RAM. */
    public static Result run(Duration timeout, Path workDir, Map<String, String> env, String... command) {
        return run(DEFAULT_MEMORY, timeout, workDir, env, command);
    }

    /**
     * Runs {@code command} in a fresh guest, in {@code workDir} (a host path; the guest sees the same
     * files), with {@code env} added to the guest's small default environment (PATH, JAVA_HOME, LANG,
     * HOME, ... of this JVM's environment). {@code timeout} bounds the whole run, boot included. Never
     * throws for guest failures: inspect {@link Result#status()} or call {@link Result#assertSucceeded()}.
     */
    public static Result run(String memory, Duration timeout, Path workDir, Map<String, String> env,
                             String... command) {
        return invoke(kernelOverride(), List.of("-m", memory), timeout, workDir, env, List.of(command), true);
    }

    /** A command line running the host's JVM (this JVM's java) inside the guest with {@link #GUEST_JVM_OPTIONS}. */
    public static List<String> guestJava(String... args) {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(GUEST_JVM_OPTIONS);
        Collections.addAll(cmd, args);
        return cmd;
    }

    /** {@code it-tests/uml}, wherever the build runs from. */
    public static Path umlDir() {
        List<Path> candidates = new ArrayList<>();
        for (String prop : new String[] {"basedir", "user.dir"}) {
            String v = System.getProperty(prop);
            if (v != null) {
                candidates.add(Path.of(v, "uml"));
                candidates.add(Path.of(v, "it-tests", "uml"));
            }
        }
        String home = System.getProperty("rbdnbd.home");
        if (home != null) {
            candidates.add(Path.of(home, "it-tests", "uml"));
        }
        for (Path c : candidates) {
            if (Files.isRegularFile(c.resolve("uml-run.sh"))) {
                return c.toAbsolutePath().normalize();
            }
        }
        throw new AssertionError("cannot find it-tests/uml/uml-run.sh; looked in " + candidates);
    }

    /** A guest-side script under {@code it-tests/uml/guest}. */
    public static Path guestScript(String name) {
        Path p = umlDir().resolve("guest").resolve(name);
        if (!Files.isRegularFile(p)) {
            throw new AssertionError("no guest script " + p);
        }
        return p;
    }

    /** -Drbdnbd.uml.kernel (and -Drbdnbd.uml.modules) as uml-run.sh's environment; empty: its own choice. */
    private static Map<String, String> kernelOverride() {
        Map<String, String> env = new LinkedHashMap<>();
        String k = System.getProperty("rbdnbd.uml.kernel");
        if (k != null && !k.isBlank()) {
            env.put("UML_RUN_KERNEL", k);
        }
        String m = System.getProperty("rbdnbd.uml.modules");
        if (m != null && !m.isBlank()) {
            env.put("UML_RUN_MODULES", m);
        }
        return env;
    }

    /** Where run directories go: -Drbdnbd.uml.tmpdir, else the harness default (/tmp). */
    private static String scratchBase() {
        String d = System.getProperty("rbdnbd.uml.tmpdir");
        return d == null || d.isBlank() ? null : d;
    }

    static Result invoke(Map<String, String> harnessEnv, List<String> options, Duration timeout, Path workDir,
                                 Map<String, String> guestEnv, List<String> command, boolean echo) {
        long seconds = Math.max(1, (timeout.toMillis() + 999) / 1000);
        List<String> argv = new ArrayList<>();
        argv.add("bash");
        argv.add(umlDir().resolve("uml-run.sh").toString());
        argv.addAll(options);
        argv.add("-t");
        argv.add(Long.toString(seconds));
        argv.add("-C");
        argv.add(workDir.toAbsolutePath().toString());
        String base = scratchBase();
        if (base != null) {
            argv.add("-T");
            argv.add(base);
        }
        guestEnv.forEach((k, v) -> {
            argv.add("-E");
            argv.add(k + "=" + v);
        });
        argv.add("--");
        argv.addAll(command);

        ProcessBuilder pb = new ProcessBuilder(argv).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        pb.environment().putAll(harnessEnv);
        long start = System.nanoTime();
        Process p;
        try {
            p = pb.start();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start " + argv, e);
        }
        StringBuilder out = new StringBuilder();
        StringBuilder err = new StringBuilder();
        Thread outPump = pump(p.getInputStream(), out, echo ? "[uml] " : null);
        Thread errPump = pump(p.getErrorStream(), err, echo ? "[uml-run] " : null);
        boolean killed = false;
        try {
            if (!p.waitFor(seconds * 1000 + KILL_GRACE.toMillis(), TimeUnit.MILLISECONDS)) {
                killed = true;
                stop(p);
            }
            outPump.join(10_000);
            errPump.join(10_000);
        } catch (InterruptedException e) {
            stop(p);
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted while the UML guest ran " + command, e);
        }
        Duration total = Duration.ofNanos(System.nanoTime() - start);
        String output;
        String log;
        synchronized (out) {
            output = out.toString();
        }
        synchronized (err) {
            log = err.toString();
        }
        return parse(command, p.isAlive() ? -1 : p.exitValue(), output, log, total, killed);
    }

    static Result parse(List<String> command, int processExit, String output, String log, Duration total,
                        boolean killed) {
        Map<String, String> summary = null;
        for (String line : log.split("\n")) {
            Matcher m = SUMMARY.matcher(line);
            if (m.matches()) {
                summary = new LinkedHashMap<>();
                for (String kv : m.group(1).split(" ")) {
                    int eq = kv.indexOf('=');
                    summary.put(kv.substring(0, eq), kv.substring(eq + 1));
                }
            }
        }
        if (summary == null || !summary.containsKey("exit")) {
            return new Result(List.copyOf(command), killed ? Status.TIMEOUT : Status.UNKNOWN, processExit, output,
                    log + (killed ? "\n(uml-run.sh did not end in time and was killed)" : ""), null, null, null, total,
                    null);
        }
        String kernel = summary.containsKey("kernel")
                ? summary.get("kernel").replace("%20", " ") + " (" + summary.getOrDefault("version", "?") + ")" : null;
        return new Result(List.copyOf(command), Status.parse(summary.get("status")),
                Integer.parseInt(summary.get("exit")), output, log, millis(summary.get("kernel_ms")),
                millis(summary.get("boot_ms")), millis(summary.get("cmd_ms")), total, kernel);
    }

    private static Duration millis(String s) {
        long v = s == null ? -1 : Long.parseLong(s);
        return v < 0 ? null : Duration.ofMillis(v);
    }

    private static String lastHarnessMessage(Result r) {
        String msg = "";
        for (String line : r.harnessLog().split("\n")) {
            if (line.startsWith("uml-run: ") && !SUMMARY.matcher(line).matches()) {
                msg = line.substring("uml-run: ".length());
            }
        }
        return msg.isEmpty() ? r.describe() : msg;
    }

    /** The text of uml-run.sh's "uml-run: STATUS: REASON" line, else everything known about the run. */
    private static String reasonLine(Result r, String status) {
        String prefix = "uml-run: " + status + ": ";
        for (String line : r.harnessLog().split("\n")) {
            if (line.startsWith(prefix)) {
                return line.substring(prefix.length());
            }
        }
        return r.describe();
    }

    /** SIGTERM first, so uml-run.sh stops the guest and removes its run directory; then force. */
    private static void stop(Process p) {
        List<ProcessHandle> tree = p.descendants().toList();
        p.destroy();
        try {
            if (!p.waitFor(15, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            p.destroyForcibly();
        }
        tree.forEach(h -> {
            if (h.isAlive()) {
                h.destroyForcibly();
            }
        });
    }

    private static Thread pump(InputStream in, StringBuilder into, String echoPrefix) {
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    synchronized (into) {
                        into.append(line).append('\n');
                    }
                    if (echoPrefix != null) {
                        System.out.println(echoPrefix + line);
                    }
                }
            } catch (IOException e) {
                synchronized (into) {
                    into.append("(reading failed: ").append(e).append(")\n");
                }
            }
        }, "uml-output");
        t.setDaemon(true);
        t.start();
        return t;
    }

    static String quote(String s) {
        return s.length() <= QUOTE_CHARS ? s
                : "[... " + (s.length() - QUOTE_CHARS) + " chars cut ...]" + s.substring(s.length() - QUOTE_CHARS);
    }
}
