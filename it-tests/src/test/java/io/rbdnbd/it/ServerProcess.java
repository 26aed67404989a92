package io.rbdnbd.it;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * One {@code bin/rbd-nbd serve ...} process: started, its URI lines read from stdout (one per
 * {@code --socket} / {@code --listen}), its stderr kept in {@code target/server-logs/} for failure
 * messages, and stopped with SIGTERM expecting exit code 0.
 */
final class ServerProcess implements AutoCloseable {
    /** JVM start plus actor system on a busy 2-core machine. */
    static final Duration START_TIMEOUT = Duration.ofSeconds(60);
    /** The server's drain-timeout is 30 s; give it that and some. */
    static final Duration STOP_TIMEOUT = Duration.ofSeconds(45);

    private static final AtomicInteger COUNTER = new AtomicInteger();
    private static final String EOF = "\u0000EOF";

    private final List<String> command;
    private final Process process;
    private final Path stderrFile;
    private final List<String> uris;
    private final List<String> extraStdout = Collections.synchronizedList(new ArrayList<>());

    private ServerProcess(List<String> command, Process process, Path stderrFile, List<String> uris) {
        this.command = command;
        this.process = process;
        this.stderrFile = stderrFile;
        this.uris = uris;
    }

    /** The project root (system property {@code rbdnbd.home}, set by the it-tests pom). */
    static Path home() {
        String h = System.getProperty("rbdnbd.home");
        Path home = h != null && !h.isBlank() ? Path.of(h) : Path.of("").toAbsolutePath().getParent();
        return home.toAbsolutePath().normalize();
    }

    /** {@code bin/rbd-nbd}, failing clearly when the tree is not built. */
    static Path launcher() {
        Path launcher = home().resolve("bin").resolve("rbd-nbd");
        if (!Files.isExecutable(launcher)) {
            fail("launcher " + launcher + " is missing or not executable (rbdnbd.home=" + home() + ")");
        }
        if (!Files.isDirectory(home().resolve("cli/target/lib"))) {
            fail("the project is not built: run `mvn -q -DskipTests package` in " + home());
        }
        return launcher;
    }

    /** Command line of {@code bin/rbd-nbd} with the given arguments. */
    static List<String> launcherCommand(String... args) {
        List<String> cmd = new ArrayList<>();
        cmd.add(launcher().toString());
        cmd.addAll(List.of(args));
        return cmd;
    }

    /** Starts {@code rbd-nbd serve ARGS} and waits for one URI line per listener. */
    static ServerProcess start(String... serveArgs) {
        return start(java.util.Map.of(), serveArgs);
    }

    /** As {@link #start(String...)}, with extra environment (e.g. RBDNBD_JAVA_OPTS). */
    static ServerProcess start(java.util.Map<String, String> env, String... serveArgs) {
        int listeners = 0;
        for (String a : serveArgs) {
            if (a.equals("--socket") || a.equals("--listen")) {
                listeners++;
            }
        }
        for (int i = 0; i + 1 < serveArgs.length; i++) {
            if (serveArgs[i].equals("--socket") && serveArgs[i + 1].length() >= 100) {
                fail("socket path too long for a Unix socket (" + serveArgs[i + 1].length() + " chars): "
                        + serveArgs[i + 1]);
            }
        }
        List<String> cmd = new ArrayList<>();
        cmd.add(launcher().toString());
        cmd.add("serve");
        cmd.addAll(List.of(serveArgs));

        Path logs = Path.of("target", "server-logs").toAbsolutePath();
        Path stderrFile;
        Process p;
        try {
            Files.createDirectories(logs);
            stderrFile = logs.resolve(String.format("server-%03d-%s.stderr.log", COUNTER.incrementAndGet(),
                    LocalDateTime.now().format(DateTimeFormatter.ofPattern("HHmmss"))));
            Files.writeString(stderrFile, "# " + (env.isEmpty() ? "" : env + " ") + String.join(" ", cmd) + "\n");
            ProcessBuilder pb = new ProcessBuilder(cmd)
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                    .redirectError(ProcessBuilder.Redirect.appendTo(stderrFile.toFile()));
            pb.environment().putAll(env);
            p = pb.start();
        } catch (IOException e) {
            throw new AssertionError("cannot start " + cmd + ": " + e, e);
        }

        BlockingQueue<String> lines = new LinkedBlockingQueue<>();
        Thread reader = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    lines.add(line);
                }
            } catch (IOException ignored) {
                // the process went away
            } finally {
                lines.add(EOF);
            }
        }, "stdout-of-rbd-nbd");
        reader.setDaemon(true);
        reader.start();

        List<String> uris = new ArrayList<>();
        long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
        try {
            while (uris.size() < listeners) {
                long left = deadline - System.nanoTime();
                String line = left <= 0 ? null : lines.poll(left, TimeUnit.NANOSECONDS);
                if (line == null) {
                    p.destroyForcibly();
                    fail("rbd-nbd printed " + uris.size() + " of " + listeners + " URI line(s) within "
                            + START_TIMEOUT + " (" + uris + ")\n" + stderrOf(stderrFile));
                }
                if (line.equals(EOF)) {
                    p.waitFor(10, TimeUnit.SECONDS);
                    fail("rbd-nbd exited (" + (p.isAlive() ? "still alive?" : "exit " + p.exitValue())
                            + ") before printing its URIs (got " + uris + ")\n" + stderrOf(stderrFile));
                }
                if (!line.matches("^nbds?(\\+unix)?://.*")) {
                    p.destroyForcibly();
                    fail("rbd-nbd printed a line that is not an NBD URI: '" + line + "'\n" + stderrOf(stderrFile));
                }
                uris.add(line);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            p.destroyForcibly();
            throw new AssertionError("interrupted", e);
        }
        ServerProcess server = new ServerProcess(cmd, p, stderrFile, List.copyOf(uris));
        Thread rest = new Thread(() -> {
            try {
                for (String line = lines.take(); !line.equals(EOF); line = lines.take()) {
                    server.extraStdout.add(line);
                }
            } catch (InterruptedException ignored) {
                // the JVM is ending
            }
        }, "stdout-rest-of-rbd-nbd");
        rest.setDaemon(true);
        rest.start();
        return server;
    }

    List<String> uris() {
        return uris;
    }

    /** The first URI printed. */
    String uri() {
        return uris.get(0);
    }

    String unixUri() {
        return uris.stream().filter(u -> u.matches("^nbds?\\+unix://.*")).findFirst()
                .orElseThrow(() -> new AssertionError("no nbd+unix URI among " + uris));
    }

    String tcpUri() {
        return uris.stream().filter(u -> u.matches("^nbds?://.*")).findFirst()
                .orElseThrow(() -> new AssertionError("no nbd:// URI among " + uris));
    }

    /** The socket path of the first Unix listener (the URI's socket= value, percent-decoded). */
    Path socketPath() {
        String u = unixUri();
        String v = u.substring(u.indexOf("socket=") + "socket=".length());
        int amp = v.indexOf('&');
        return Path.of(percentDecode(amp < 0 ? v : v.substring(0, amp)));
    }

    static String percentDecode(String s) {
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '%' && i + 2 < s.length()) {
                out.write(Integer.parseInt(s.substring(i + 1, i + 3), 16));
                i += 2;
            } else {
                out.writeBytes(String.valueOf(c).getBytes(StandardCharsets.UTF_8));
            }
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    /** Port of the first TCP listener, parsed from its printed URI. */
    int tcpPort() {
        String u = tcpUri();
        int start = u.indexOf("://") + 3;
        String hostPort = u.substring(start, u.indexOf('/', start));
        return Integer.parseInt(hostPort.substring(hostPort.lastIndexOf(':') + 1));
    }

    Process process() {
        return process;
    }

    boolean isAlive() {
        return process.isAlive();
    }

    /** Lines the server printed on stdout after its URIs (there should be none). */
    List<String> extraStdout() {
        return List.copyOf(extraStdout);
    }

    Path stderrFile() {
        return stderrFile;
    }

    String stderr() {
        try {
            return Files.readString(stderrFile, StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "(cannot read " + stderrFile + ": " + e + ")";
        }
    }

    /** The server's stderr, framed for an assertion message. */
    String describe() {
        return "server `" + String.join(" ", command) + "`" + (process.isAlive() ? " (running)" : " (exit "
                + process.exitValue() + ")") + "\n" + stderrOf(stderrFile);
    }

    private static String stderrOf(Path file) {
        String s;
        try {
            s = Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            s = "(cannot read: " + e + ")";
        }
        return "--- server stderr (" + file + ") ---\n" + Commands.quote(s);
    }

    /** Sends SIGTERM (Process.destroy does that on Linux). */
    void sendTerm() {
        process.destroy();
    }

    /** Waits for the process to end; the exit code, or fails when it is still running after the timeout. */
    int awaitExit(Duration timeout) {
        try {
            if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                String why = "rbd-nbd did not exit within " + timeout + " (of the signal that should end it)\n" + describe();
                process.destroyForcibly();
                process.waitFor(10, TimeUnit.SECONDS);
                fail(why);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
        return process.exitValue();
    }

    /** SIGTERM, then expects a clean exit (0) within {@link #STOP_TIMEOUT}. */
    void stop() {
        sendTerm();
        int code = awaitExit(STOP_TIMEOUT);
        assertEquals(0, code, "rbd-nbd exit code after SIGTERM\n" + describe());
    }

    /** Kills a server a failed test left running; a no-op once it has stopped. */
    @Override
    public void close() {
        if (process.isAlive()) {
            process.destroyForcibly();
            try {
                process.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
