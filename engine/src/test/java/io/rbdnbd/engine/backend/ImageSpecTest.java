package io.rbdnbd.engine.backend;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ImageSpecTest {

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "img            | rbd  |     | img | ",
            "pool/img       | pool |     | img | ",
            "pool/ns/img    | pool | ns  | img | ",
            "pool/ns/img@s1 | pool | ns  | img | s1",
            "img@s1         | rbd  |     | img | s1",
            "p/i@snap.2     | p    |     | i   | snap.2",
    })
    void rbdSpecsAsCephWritesThem(String text, String pool, String ns, String image, String snap) {
        ImageSpec.Rbd r = (ImageSpec.Rbd) ImageSpec.parse(text);
        assertEquals(pool, r.pool());
        assertEquals(ns == null ? "" : ns, r.namespace());
        assertEquals(image, r.image());
        assertEquals(snap, r.snap());
        assertEquals(snap != null, r.atSnapshot());
        assertEquals(text.contains("/") ? text : "rbd/" + text, r.toString());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "pool/             | empty pool, namespace or image name",
            "/img              | empty pool, namespace or image name",
            "a//b              | empty pool, namespace or image name",
            "a/b/c/d           | too many '/'",
            "img@              | bad snapshot name",
            "img@a@b           | bad snapshot name",
            "file:             | file: needs a path",
            "memory:lots       | is not a number",
    })
    void badSpecsSayWhatIsWrong(String text, String expected) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ImageSpec.parse(text));
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }

    @org.junit.jupiter.api.Test
    void snapIdAndOptions() {
        ImageSpec.Rbd r = ((ImageSpec.Rbd) ImageSpec.parse("p/i")).withSnapId(7).withExclusive(true);
        assertTrue(r.atSnapshot());
        assertTrue(r.exclusive());
        assertEquals("p/i@{id 7}", r.toString());
        assertThrows(IllegalArgumentException.class, () -> ((ImageSpec.Rbd) ImageSpec.parse("p/i@s")).withSnapId(3));
        assertThrows(IllegalArgumentException.class, () -> new ImageSpec.Rbd.Encryption("aes", null));
    }
}
