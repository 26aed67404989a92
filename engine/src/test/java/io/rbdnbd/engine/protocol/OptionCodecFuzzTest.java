package io.rbdnbd.engine.protocol;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;

import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Coverage-guided fuzzing of the option payload parsers: any bytes either parse into a request
 * whose strings fit the spec's 4096-byte bound, or are refused with IllegalArgumentException
 * (which the handshake answers NBD_REP_ERR_INVALID); nothing else may escape.
 */
class OptionCodecFuzzTest {

    @FuzzTest(maxDuration = "30s")
    void optionPayloads(FuzzedDataProvider data) {
        boolean meta = data.consumeBoolean();
        byte[] bytes = data.consumeRemainingAsBytes();
        try {
            if (meta) {
                OptionCodec.MetaContextRequest r = OptionCodec.parseMetaContextRequest(bytes);
                assertTrue(fits(r.exportName()));
                r.queries().forEach(q -> assertTrue(fits(q)));
                assertTrue(r.queries().size() <= bytes.length / 4);
            } else {
                OptionCodec.InfoRequest r = OptionCodec.parseInfoRequest(bytes);
                assertTrue(fits(r.exportName()));
                assertTrue(r.infos().size() <= bytes.length / 2);
            }
        } catch (IllegalArgumentException refused) {
            // a malformed payload: answered NBD_REP_ERR_INVALID
        }
    }

    private static boolean fits(String s) {
        return s.getBytes(StandardCharsets.UTF_8).length <= 4096 * 3; // decoding may widen invalid UTF-8
    }
}
