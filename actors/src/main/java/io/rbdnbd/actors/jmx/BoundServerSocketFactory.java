package io.rbdnbd.actors.jmx;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.rmi.server.RMIServerSocketFactory;

/**
 * RMI server sockets listening on one address only (RMI's default listens on every interface).
 * A record: RMI shares one listening port between exports whose factories are equal, which is
 * how the registry and the JMX connector serve on one port.
 */
record BoundServerSocketFactory(InetAddress address) implements RMIServerSocketFactory {
    @Override
    public ServerSocket createServerSocket(int port) throws IOException {
        ServerSocket s = new ServerSocket();
        try {
            s.setReuseAddress(true); // a restarted daemon binds again at once
            s.bind(new InetSocketAddress(address, port));
        } catch (IOException e) {
            s.close();
            throw e;
        }
        return s;
    }
}
