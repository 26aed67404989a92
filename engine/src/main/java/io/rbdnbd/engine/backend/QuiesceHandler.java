package io.rbdnbd.engine.backend;

import java.util.concurrent.CompletionStage;

/**
 * What the owner of a device does around a snapshot of its image (Ceph's {@code rbd-nbd
 * --quiesce}): {@link #quiesce()} before the snapshot is taken, {@link #unquiesce()} after.
 * Registered with {@link BlockBackend#watchQuiesce}. Calls never overlap: each starts after the
 * stage of the previous one has completed.
 */
public interface QuiesceHandler {

    /**
     * A snapshot is about to be taken: make what lies above the device consistent (for instance,
     * freeze its filesystem) and complete. A failed stage fails the snapshot; one that never
     * completes holds it (bound it, as {@code QuiesceHook}'s timeout does). The backend flushes
     * the image once the stage has completed normally, before the snapshot is taken.
     */
    CompletionStage<Void> quiesce();

    /**
     * The snapshot is taken, or failed after the quiesce: undo it. Follows each quiesce that
     * completed normally, and no other. A failure is only logged: the snapshot exists either way.
     */
    CompletionStage<Void> unquiesce();
}
