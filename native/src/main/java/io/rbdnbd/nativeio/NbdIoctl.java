package io.rbdnbd.nativeio;

/** Request numbers of the kernel's NBD and block-device ioctls ({@code _IO(type, nr)}). */
public final class NbdIoctl {
    private NbdIoctl() {
    }

    public static final long NBD_SET_SOCK = 0xab00;
    public static final long NBD_SET_BLKSIZE = 0xab01;
    public static final long NBD_SET_SIZE = 0xab02;
    public static final long NBD_DO_IT = 0xab03;
    public static final long NBD_CLEAR_SOCK = 0xab04;
    public static final long NBD_CLEAR_QUE = 0xab05;
    public static final long NBD_SET_SIZE_BLOCKS = 0xab07;
    public static final long NBD_DISCONNECT = 0xab08;
    public static final long NBD_SET_TIMEOUT = 0xab09;
    public static final long NBD_SET_FLAGS = 0xab0a;

    /** _IO(0x12, 93): set the block device read-only (argument: pointer to int). */
    public static final long BLKROSET = 0x125d;
    /** _IO(0x12, 95): re-read the partition table. */
    public static final long BLKRRPART = 0x125f;
    /** _IO(0x12, 97): flush buffers (drop the page cache of the device). */
    public static final long BLKFLSBUF = 0x1261;
}
