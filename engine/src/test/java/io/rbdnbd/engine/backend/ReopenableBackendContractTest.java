package io.rbdnbd.engine.backend;

import java.time.Duration;

/** The wrapper is a backend like any other while its handle is up. */
class ReopenableBackendContractTest extends BlockBackendContract {
    @Override
    protected BlockBackend create(long size) {
        return new ReopenableBackend(new MemoryBackend(size), Duration.ofSeconds(1), lost -> {
            throw new AssertionError("no handle is lost here: " + lost);
        });
    }
}
