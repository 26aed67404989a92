package io.rbdnbd.engine.stream;

/** Deterministic test data. */
final class BlockBackendData {
    private BlockBackendData() {
    }

    static byte[] pattern(int n, int seed) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 31 + seed);
        }
        return b;
    }
}
