package io.rbdnbd.engine.server;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.TrustManagerFactory;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The export's X.509 credentials, from a directory in qemu's layout ({@code --tls-certs DIR}, as
 * qemu's tls-creds-x509 and nbdkit's --tls-certificates read it): {@code server-cert.pem} (the
 * server's certificate, then its chain), {@code server-key.pem} (its key, PKCS#8 or PKCS#1 RSA, not
 * encrypted) and {@code ca-cert.pem} (the CA that client certificates must chain to, needed only
 * with {@code verifyPeer}).
 */
public final class TlsCredentials {
    private static final Pattern PEM = Pattern.compile(
            "-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\\s]+)-----END \\1-----");

    private final SSLContext context;
    private final boolean verifyPeer;

    private TlsCredentials(SSLContext context, boolean verifyPeer) {
        this.context = context;
        this.verifyPeer = verifyPeer;
    }

    /**
     * @param verifyPeer clients must present a certificate signed by {@code ca-cert.pem}
     * @throws IOException naming the file and what is wrong with it
     */
    public static TlsCredentials load(Path dir, boolean verifyPeer) throws IOException {
        Path certFile = dir.resolve("server-cert.pem");
        Path keyFile = dir.resolve("server-key.pem");
        Path caFile = dir.resolve("ca-cert.pem");
        List<Certificate> chain = certificates(certFile);
        PrivateKey key = privateKey(keyFile);
        try {
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            ks.setKeyEntry("server", key, new char[0], chain.toArray(Certificate[]::new));
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, new char[0]);
            TrustManagerFactory tmf = null;
            if (verifyPeer) {
                KeyStore trust = KeyStore.getInstance("PKCS12");
                trust.load(null, null);
                int i = 0;
                for (Certificate ca : certificates(caFile)) {
                    trust.setCertificateEntry("ca" + i++, ca);
                }
                tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
                tmf.init(trust);
            }
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(kmf.getKeyManagers(), tmf == null ? null : tmf.getTrustManagers(), null);
            return new TlsCredentials(ctx, verifyPeer);
        } catch (GeneralSecurityException e) {
            throw new IOException("TLS credentials in " + dir + ": " + e.getMessage(), e);
        }
    }

    /** A server-side engine for one connection (TLS 1.2 or 1.3). */
    SSLEngine newEngine() {
        SSLEngine e = context.createSSLEngine();
        e.setUseClientMode(false);
        e.setEnabledProtocols(new String[] {"TLSv1.3", "TLSv1.2"});
        if (verifyPeer) {
            e.setNeedClientAuth(true);
        }
        return e;
    }

    private static List<byte[]> pemBlocks(Path file, String... types) throws IOException {
        String text;
        try {
            text = Files.readString(file);
        } catch (java.nio.file.NoSuchFileException e) {
            throw new IOException("TLS: " + file + " does not exist", e);
        }
        List<byte[]> blocks = new ArrayList<>();
        Matcher m = PEM.matcher(text);
        while (m.find()) {
            for (String t : types) {
                if (t.equals(m.group(1))) {
                    blocks.add(Base64.getMimeDecoder().decode(m.group(2)));
                }
            }
        }
        if (blocks.isEmpty()) {
            throw new IOException("TLS: " + file + " holds no PEM block of type " + String.join(" or ", types));
        }
        return blocks;
    }

    private static List<Certificate> certificates(Path file) throws IOException {
        List<Certificate> certs = new ArrayList<>();
        try {
            CertificateFactory cf = CertificateFactory.getInstance("X.509");
            for (byte[] der : pemBlocks(file, "CERTIFICATE")) {
                certs.add(cf.generateCertificate(new ByteArrayInputStream(der)));
            }
        } catch (GeneralSecurityException e) {
            throw new IOException("TLS: " + file + ": not an X.509 certificate: " + e.getMessage(), e);
        }
        return certs;
    }

    private static PrivateKey privateKey(Path file) throws IOException {
        byte[] der = pemBlocks(file, "PRIVATE KEY", "RSA PRIVATE KEY").get(0);
        boolean pkcs1 = Files.readString(file).contains("BEGIN RSA PRIVATE KEY");
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(pkcs1 ? rsaPkcs1ToPkcs8(der) : der);
        for (String alg : new String[] {"RSA", "EC", "Ed25519", "RSASSA-PSS"}) {
            try {
                return KeyFactory.getInstance(alg).generatePrivate(spec);
            } catch (GeneralSecurityException tryNext) {
                // the PEM does not say which algorithm: try the common ones
            }
        }
        throw new IOException("TLS: " + file + ": not an unencrypted RSA, EC or Ed25519 private key (PKCS#8 or PKCS#1;"
                + " convert others with: openssl pkcs8 -topk8 -nocrypt)");
    }

    /** Wraps a PKCS#1 RSAPrivateKey in a PKCS#8 PrivateKeyInfo (version 0, rsaEncryption). */
    private static byte[] rsaPkcs1ToPkcs8(byte[] pkcs1) {
        byte[] algorithm = {0x30, 0x0d, 0x06, 0x09, 0x2a, (byte) 0x86, 0x48, (byte) 0x86, (byte) 0xf7, 0x0d, 0x01, 0x01,
                0x01, 0x05, 0x00};
        byte[] version = {0x02, 0x01, 0x00};
        byte[] octets = derWrap(0x04, pkcs1);
        byte[] body = new byte[version.length + algorithm.length + octets.length];
        System.arraycopy(version, 0, body, 0, version.length);
        System.arraycopy(algorithm, 0, body, version.length, algorithm.length);
        System.arraycopy(octets, 0, body, version.length + algorithm.length, octets.length);
        return derWrap(0x30, body);
    }

    private static byte[] derWrap(int tag, byte[] content) {
        int n = content.length;
        byte[] len = n < 0x80 ? new byte[] {(byte) n}
                : n < 0x100 ? new byte[] {(byte) 0x81, (byte) n}
                : n < 0x10000 ? new byte[] {(byte) 0x82, (byte) (n >> 8), (byte) n}
                : new byte[] {(byte) 0x83, (byte) (n >> 16), (byte) (n >> 8), (byte) n};
        byte[] out = new byte[1 + len.length + n];
        out[0] = (byte) tag;
        System.arraycopy(len, 0, out, 1, len.length);
        System.arraycopy(content, 0, out, 1 + len.length, n);
        return out;
    }
}
