package io.rbdnbd.it;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * TLS on TCP exports against real TLS clients (libnbd's nbdinfo and nbdcopy, qemu-img with
 * tls-creds-x509, all GnuTLS): certificates in qemu's directory layout made with openssl for the
 * run (a CA, a server certificate for 127.0.0.1, a client certificate), plaintext refused in
 * require mode before any export is named, client certificates checked with --tls-verify-peer.
 */
class TlsExportTest {
    private static final long SIZE = 64 << 20;

    @TempDir
    static Path dir;
    static Path server;
    static Path client;
    static Path noCert;

    @BeforeAll
    static void certificates() throws IOException {
        Path ca = dir.resolve("ca");
        server = dir.resolve("server");
        client = dir.resolve("client");
        noCert = dir.resolve("nocert");
        for (Path d : List.of(ca, server, client, noCert)) {
            Files.createDirectories(d);
        }
        // The extensions GnuTLS (qemu, libnbd) insists on: CA basic constraints, key usages, EKUs, SAN.
        Path cnf = Files.writeString(ca.resolve("openssl.cnf"), """
                [req]
                distinguished_name=dn
                [dn]
                [ca]
                basicConstraints=critical,CA:TRUE
                keyUsage=critical,keyCertSign,cRLSign
                subjectKeyIdentifier=hash
                [server]
                basicConstraints=critical,CA:FALSE
                keyUsage=critical,digitalSignature,keyEncipherment
                extendedKeyUsage=serverAuth
                subjectAltName=IP:127.0.0.1,DNS:localhost
                [client]
                basicConstraints=critical,CA:FALSE
                keyUsage=critical,digitalSignature,keyEncipherment
                extendedKeyUsage=clientAuth
                """);
        openssl(ca, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca-cert.pem",
                "-days", "2", "-subj", "/CN=rbdnbd test CA", "-config", cnf.toString(), "-extensions", "ca");
        for (String who : List.of("server", "client")) {
            openssl(ca, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", who + "-key.pem", "-out", who + ".csr",
                    "-subj", "/CN=" + (who.equals("server") ? "127.0.0.1" : "rbdnbd test client"), "-config", cnf.toString());
            openssl(ca, "x509", "-req", "-in", who + ".csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
                    "-CAcreateserial", "-out", who + "-cert.pem", "-days", "2", "-extfile", cnf.toString(),
                    "-extensions", who);
        }
        // The server key as PKCS#1 ("BEGIN RSA PRIVATE KEY", what certtool writes), the client's as PKCS#8.
        openssl(ca, "rsa", "-in", "server-key.pem", "-traditional", "-out", server.resolve("server-key.pem").toString());
        Files.copy(ca.resolve("server-cert.pem"), server.resolve("server-cert.pem"));
        Files.copy(ca.resolve("client-cert.pem"), client.resolve("client-cert.pem"));
        Files.copy(ca.resolve("client-key.pem"), client.resolve("client-key.pem"));
        for (Path d : List.of(server, client, noCert)) {
            Files.copy(ca.resolve("ca-cert.pem"), d.resolve("ca-cert.pem"));
        }
        assertTrue(Files.readString(server.resolve("server-key.pem")).contains("BEGIN RSA PRIVATE KEY"));
    }

    private static void openssl(Path cwd, String... args) {
        String[] cmd = new String[args.length + 1];
        cmd[0] = "openssl";
        System.arraycopy(args, 0, cmd, 1, args.length);
        Commands.Result r = Commands.run(Commands.DEFAULT_TIMEOUT, cwd, cmd);
        assertEquals(0, r.exitCode(), r.describe());
    }

    private static ServerProcess serve(String... tls) {
        String[] args = new String[4 + tls.length];
        args[0] = "memory:" + SIZE;
        args[1] = "--listen";
        args[2] = "127.0.0.1:0";
        args[3] = "--tls-certs";
        String[] all = new String[args.length + 1];
        System.arraycopy(args, 0, all, 0, 4);
        all[4] = server.toString();
        System.arraycopy(tls, 0, all, 5, tls.length);
        return ServerProcess.start(all);
    }

    private static String tlsUri(ServerProcess s, Path certs) {
        return "nbds://127.0.0.1:" + s.tcpPort() + "/?tls-certificates=" + certs;
    }

    private static String qemuCreds(Path certs) {
        return "tls-creds-x509,id=tls0,endpoint=client,dir=" + certs;
    }

    @Test
    void requireServesTlsClientsAndRefusesPlaintext() throws IOException {
        try (ServerProcess s = serve("--tls", "require")) {
            assertTrue(s.tcpUri().startsWith("nbds://127.0.0.1:"), s.tcpUri());
            Commands.Result info = Commands.run(Commands.nbdinfo(), "--size", tlsUri(s, client));
            assertEquals(0, info.exitCode(), info.describe() + s.describe());
            assertEquals(String.valueOf(SIZE), info.stdout().trim());

            Commands.Result plain = Commands.run(Commands.nbdinfo(), "--size", "nbd://127.0.0.1:" + s.tcpPort() + "/");
            assertNotEquals(0, plain.exitCode(), plain.describe());
            assertTrue(plain.stderr().contains("TLS"), plain.describe());

            // Data through TLS both ways: qemu-img writes, nbdcopy reads back.
            byte[] data = new byte[8 << 20];
            new Random(5).nextBytes(data);
            Path src = Files.write(dir.resolve("src.raw"), data);
            Commands.Result convert = Commands.run("qemu-img", "convert", "-n", "-f", "raw", src.toString(),
                    "--object", qemuCreds(client), "--target-image-opts",
                    "driver=nbd,host=127.0.0.1,port=" + s.tcpPort() + ",tls-creds=tls0");
            assertEquals(0, convert.exitCode(), convert.describe() + s.describe());
            Path out = dir.resolve("out.raw");
            Commands.Result copy = Commands.run(Commands.DEFAULT_TIMEOUT, dir, "nbdcopy", tlsUri(s, client), out.toString());
            assertEquals(0, copy.exitCode(), copy.describe());
            byte[] back = new byte[data.length];
            System.arraycopy(Files.readAllBytes(out), 0, back, 0, back.length);
            assertArrayEquals(data, back, "what qemu-img wrote over TLS, nbdcopy reads back over TLS");
            s.stop();
        }
    }

    @Test
    void onServesBothAndVerifyPeerWantsAClientCertificate() {
        try (ServerProcess s = serve("--tls", "on")) {
            assertEquals(0, Commands.run(Commands.nbdinfo(), "--size", tlsUri(s, client)).exitCode());
            Commands.Result plain = Commands.run(Commands.nbdinfo(), "--size", "nbd://127.0.0.1:" + s.tcpPort() + "/");
            assertEquals(0, plain.exitCode(), plain.describe());
            s.stop();
        }
        try (ServerProcess s = serve("--tls", "require", "--tls-verify-peer")) {
            Commands.Result with = Commands.run(Commands.nbdinfo(), "--size", tlsUri(s, client));
            assertEquals(0, with.exitCode(), with.describe() + s.describe());
            Commands.Result without = Commands.run(Commands.nbdinfo(), "--size", tlsUri(s, noCert));
            assertNotEquals(0, without.exitCode(), "no client certificate: refused\n" + without.describe());
            Commands.Result qemu = Commands.run("qemu-img", "info", "--object", qemuCreds(client), "--image-opts",
                    "driver=nbd,host=127.0.0.1,port=" + s.tcpPort() + ",tls-creds=tls0");
            assertEquals(0, qemu.exitCode(), qemu.describe());
            s.stop();
            assertTrue(s.stderr().contains("TLS handshake failed"), s.describe());
        }
    }

    @Test
    void brokenCredentialsStopTheStartWithOneClearLine() throws IOException {
        Path empty = Files.createDirectories(dir.resolve("empty"));
        Commands.Result r = Commands.run(ServerProcess.launcherCommand("serve", "memory:1M", "--listen", "127.0.0.1:0",
                "--tls", "require", "--tls-certs", empty.toString()).toArray(String[]::new));
        LauncherTest.assertOneClearLine(r, 1, empty.resolve("server-cert.pem") + " does not exist");
        Commands.Result noCerts = Commands.run(ServerProcess.launcherCommand("serve", "memory:1M", "--listen",
                "127.0.0.1:0", "--tls", "on").toArray(String[]::new));
        LauncherTest.assertOneClearLine(noCerts, 1, "--tls-certs");
    }
}
