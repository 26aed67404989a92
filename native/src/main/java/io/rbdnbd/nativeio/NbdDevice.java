package io.rbdnbd.nativeio;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalInt;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An open {@code /dev/nbdN} and the ioctls of the kernel's NBD driver (ioctl interface), plus
 * what sysfs says about the device. Each failure names the ioctl and the device.
 */
public final class NbdDevice implements AutoCloseable {
    private static final Pattern NAME = Pattern.compile("/dev/nbd(\\d+)");

    private final String path;
    private final int index;
    private final int fd;

    private NbdDevice(String path, int index, int fd) {
        this.path = path;
        this.index = index;
        this.fd = fd;
    }

    /** @throws NativeException ENODEV-style errors naming the device; ENOENT when no nbd driver */
    public static NbdDevice open(String path) throws NativeException {
        int index = index(path);
        return new NbdDevice(path, index, LibC.openFile(path, LibC.O_RDWR, 0));
    }

    /** N of /dev/nbdN, or IllegalArgumentException when the path names no nbd device. */
    public static int index(String path) {
        Matcher m = NAME.matcher(path);
        if (!m.matches()) {
            throw new IllegalArgumentException(path + " is not an nbd device (/dev/nbdN)");
        }
        return Integer.parseInt(m.group(1));
    }

    public String path() {
        return path;
    }

    public int index() {
        return index;
    }

    private void ioctl(long request, long arg, String name) throws NativeException {
        LibC.ioctlFd(fd, request, arg, name + " on " + path);
    }

    public void setBlockSize(long bytes) throws NativeException {
        ioctl(NbdIoctl.NBD_SET_BLKSIZE, bytes, "NBD_SET_BLKSIZE");
    }

    public void setSize(long bytes) throws NativeException {
        ioctl(NbdIoctl.NBD_SET_SIZE, bytes, "NBD_SET_SIZE");
    }

    public void setFlags(int flags) throws NativeException {
        ioctl(NbdIoctl.NBD_SET_FLAGS, flags, "NBD_SET_FLAGS");
    }

    public void setTimeout(long seconds) throws NativeException {
        ioctl(NbdIoctl.NBD_SET_TIMEOUT, seconds, "NBD_SET_TIMEOUT");
    }

    public void setSocket(int socketFd) throws NativeException {
        ioctl(NbdIoctl.NBD_SET_SOCK, socketFd, "NBD_SET_SOCK");
    }

    /** Blocks until the device is disconnected (NBD_DISCONNECT, or the socket dies). */
    public void doIt() throws NativeException {
        ioctl(NbdIoctl.NBD_DO_IT, 0, "NBD_DO_IT");
    }

    public void clearQueue() throws NativeException {
        ioctl(NbdIoctl.NBD_CLEAR_QUE, 0, "NBD_CLEAR_QUE");
    }

    public void clearSocket() throws NativeException {
        ioctl(NbdIoctl.NBD_CLEAR_SOCK, 0, "NBD_CLEAR_SOCK");
    }

    public void disconnect() throws NativeException {
        ioctl(NbdIoctl.NBD_DISCONNECT, 0, "NBD_DISCONNECT");
    }

    public void setReadOnly(boolean readOnly) throws NativeException {
        try (Memory flag = new Memory(4)) {
            flag.setInt(0, readOnly ? 1 : 0);
            ioctl(NbdIoctl.BLKROSET, Pointer.nativeValue(flag), "BLKROSET");
        }
    }

    public void flushBuffers() throws NativeException {
        ioctl(NbdIoctl.BLKFLSBUF, 0, "BLKFLSBUF");
    }

    public void rereadPartitions() throws NativeException {
        ioctl(NbdIoctl.BLKRRPART, 0, "BLKRRPART");
    }

    @Override
    public void close() throws NativeException {
        LibC.closeFd(fd);
    }

    /** The pid serving /dev/nbdN (sysfs {@code pid} exists only while connected), if any. */
    public static OptionalInt servingPid(int index) {
        Path pid = Path.of("/sys/block/nbd" + index + "/pid");
        int task;
        try {
            task = Integer.parseInt(Files.readString(pid).trim());
        } catch (IOException | NumberFormatException e) {
            return OptionalInt.empty();
        }
        // The kernel records the thread that connected the device; its process is what serves it.
        try {
            for (String line : Files.readAllLines(Path.of("/proc/" + task + "/status"))) {
                if (line.startsWith("Tgid:")) {
                    return OptionalInt.of(Integer.parseInt(line.substring(5).trim()));
                }
            }
        } catch (IOException | NumberFormatException e) {
            // that thread is gone
        }
        return OptionalInt.of(task);
    }

    /**
     * True when /dev/nbdN is connected but the process that served it is gone: a netlink device the
     * kernel holds for a re-attach.
     */
    public static boolean orphaned(int index) {
        OptionalInt pid = servingPid(index);
        return pid.isPresent() && !ProcessHandle.of(pid.getAsInt()).map(ProcessHandle::isAlive).orElse(false);
    }

    /** The backend identifier (cookie) a netlink-attached device was connected with, if any. */
    public static java.util.Optional<String> backendId(int index) {
        try {
            String id = Files.readString(Path.of("/sys/block/nbd" + index + "/backend")).trim();
            return id.isEmpty() ? java.util.Optional.empty() : java.util.Optional.of(id);
        } catch (IOException e) {
            return java.util.Optional.empty();
        }
    }

    /** Device size in bytes as the kernel sees it (sysfs counts 512-byte sectors). */
    public static long kernelSize(int index) throws IOException {
        return Long.parseLong(Files.readString(Path.of("/sys/block/nbd" + index + "/size")).trim()) * 512;
    }

    /** Whether the nbd driver is loaded (devices exist). */
    public static boolean driverPresent() {
        return Files.isDirectory(Path.of("/sys/module/nbd")) || Files.exists(Path.of("/sys/block/nbd0"));
    }

    /** The lowest-numbered /dev/nbdN that nobody serves, if any. */
    public static OptionalInt firstFree() {
        for (int i = 0; Files.exists(Path.of("/sys/block/nbd" + i)); i++) {
            if (servingPid(i).isEmpty() && Files.exists(Path.of("/dev/nbd" + i))) {
                return OptionalInt.of(i);
            }
        }
        return OptionalInt.empty();
    }
}
